"""Token sequences of the two prompts: the SVLM's per-segment prompt and the answering LLM's prompt.

Every special token comes from the tokenizers; nothing is hard-coded by id. The SVLM prompt is split
at the end of the video into a question-independent prefix (system prompt + timestamped video tokens,
cacheable per video) and a question suffix; the split falls after ``<|vision_end|>``, a special token,
so tokenising the two halves apart gives exactly the ids of tokenising the whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

SVLM_SYSTEM_PROMPT = (
    "You are a query-conditioned visual compressor. Store in the provided memory tokens the minimal "
    "visual information needed to answer the Query. Ignore irrelevant details. Now, before compressing, "
    "answer exactly 'Yes' or 'No': is this segment relevant to the Query?"
)
LLM_SYSTEM_PROMPT = "You are a helpful assistant."
IMAGE_PLACEHOLDER = "<image>"


def _turn(role: str, content: str, close: bool = True) -> str:
    return f"<|im_start|>{role}\n{content}" + ("<|im_end|>\n" if close else "")


@dataclass(frozen=True)
class SVLMTokens:
    """Ids of the SVLM's special tokens, read from its tokenizer."""

    pad: int
    video_pad: int
    vision_start: int
    vision_end: int
    yes: int
    no: int

    @classmethod
    def from_tokenizer(cls, tok: PreTrainedTokenizerBase) -> SVLMTokens:
        vocab = tok.get_vocab()

        def tid(token: str) -> int:
            if token not in vocab:
                raise KeyError(f"SVLM tokenizer has no token {token!r}")
            return vocab[token]

        return cls(
            pad=tok.pad_token_id if tok.pad_token_id is not None else tid("<|endoftext|>"),
            video_pad=tid("<|video_pad|>"),
            vision_start=tid("<|vision_start|>"),
            vision_end=tid("<|vision_end|>"),
            yes=tid("Yes"),
            no=tid("No"),
        )


def svlm_prefix_text(segment_index: int, frame_count: int, tokens_per_group: int, fps: float, frames_per_segment: int = 8) -> str:
    """System prompt and the user turn up to the end of the segment's video (step 5).

    Each temporal group of two frames is ``<{t:.1f} seconds><|vision_start|><|video_pad|>*n<|vision_end|>``
    with ``t`` the mean time of its first and last frame (global frame index / fps).
    """
    first = segment_index * frames_per_segment
    video = []
    for g in range(frame_count // 2):
        t = ((first + 2 * g) / fps + (first + 2 * g + 1) / fps) / 2
        video.append(f"<{t:.1f} seconds><|vision_start|>" + "<|video_pad|>" * tokens_per_group + "<|vision_end|>")
    return _turn("system", SVLM_SYSTEM_PROMPT) + "<|im_start|>user\n" + "".join(video)


def svlm_question_text(question: str) -> str:
    """The rest of the SVLM prompt after the video: the query and the generation prompt."""
    return "\nQuery:\n" + question + "<|im_end|>\n<|im_start|>assistant\n"


def segment_timestamp_text(segment_index: int, fps: float, frames_per_segment: int = 8) -> str:
    """Step 9: the window centre of a full segment, even for a short last one."""
    return f"<{(frames_per_segment * segment_index + frames_per_segment / 2) / fps:.1f} seconds>"


def llm_prompt_texts(question: str, history: list[dict[str, str]] | None = None) -> tuple[str, str]:
    """The LLM prompt as (text before the video, text after it) (step 10).

    With ``history`` (earlier turns, alternating user/assistant, oldest first), the video sits in the
    first user turn, as it did when the conversation began, and the new question is the last turn.
    """
    head = _turn("system", LLM_SYSTEM_PROMPT) + "<|im_start|>user\n"
    turns = list(history or []) + [{"role": "user", "content": question}]
    first, rest = turns[0], turns[1:]
    if first["role"] != "user":
        raise ValueError("a conversation must start with a user turn")
    tail = "\n" + first["content"] + "<|im_end|>\n"
    for turn in rest:
        tail += _turn(turn["role"], turn["content"])
    return head, tail + "<|im_start|>assistant\n"
