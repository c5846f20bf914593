"""Generated token ids -> text deltas for streaming, with stop strings applied."""

from __future__ import annotations

from collections.abc import Callable

from transformers import PreTrainedTokenizerBase


class StreamingText:
    """Turns generated ids into text deltas and applies stop strings.

    Detokenises incrementally (a window of the last few tokens, not the whole answer, per token).
    Holds back text that ends in an incomplete UTF-8 sequence and text that could still grow into a
    stop string, so a client never receives a stop string or a broken character.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: list[str], on_token: Callable[[int, str], None] | None):
        self.tok = tokenizer
        self.stop = [s for s in stop if s]
        self.on_token = on_token
        self.ids: list[int] = []
        self.text = ""  # everything decoded so far
        self.prefix_offset = 0  # ids[prefix_offset:read_offset] give context for the next piece
        self.read_offset = 0
        self.sent = ""
        self.stopped = False
        self.stop_text: str | None = None

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def push(self, token: int) -> bool:
        self.ids.append(token)
        prefix = self._decode(self.ids[self.prefix_offset: self.read_offset])
        full = self._decode(self.ids[self.prefix_offset:])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.text += full[len(prefix):]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        text = self.text
        if not self.stop and self.on_token is None:
            return False
        for s in self.stop:
            pos = text.find(s)
            if pos >= 0:
                self.stopped, self.stop_text = True, text[:pos]
                self._emit(token, text[:pos])
                return True
        safe = text
        for s in self.stop:  # hold back a possible stop-string prefix
            for k in range(min(len(s) - 1, len(safe)), 0, -1):
                if safe.endswith(s[:k]):
                    safe = safe[:-k]
                    break
        self._emit(token, safe)
        return False

    def _emit(self, token: int, upto: str) -> None:
        delta = upto[len(self.sent):] if upto.startswith(self.sent) else ""
        self.sent = upto if upto.startswith(self.sent) else self.sent
        if self.on_token is not None:
            self.on_token(token, delta)

    def final_text(self, ids: list[int]) -> str:
        text = self.stop_text if self.stopped else self._decode(ids)
        if self.on_token is not None and text.startswith(self.sent) and len(text) > len(self.sent):
            self.on_token(-1, text[len(self.sent):])  # flush held-back text; -1 = no new token
            self.sent = text
        return text
