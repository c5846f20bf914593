import subprocess
import sys


def test_gateway_never_imports_torch():
    code = ("import sys; import service.app, service.cli, service.routes.openai; "
            "service.app.create_app(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
