"""LISA's prompt strings, by hand and against the checkout's conversation templates."""

from __future__ import annotations

from harness_lisa import prompts

SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the human's questions.")


def test_refcoco_prompt_exact() -> None:
    expected = (SYSTEM + " USER: <im_start><image><im_end>\n What is the man on left in this image? "
                "Please output segmentation mask. ASSISTANT: [SEG].</s>")
    assert prompts.eval_prompt("  The Man On LEFT ", "refcoco") == expected


def test_reasonseg_keeps_case_and_uses_sentence_template() -> None:
    long = prompts.eval_prompt(" What can hold Water? ", "reasonseg", is_sentence=True)
    assert long == (SYSTEM + " USER: <im_start><image><im_end>\n What can hold Water? Please output segmentation mask."
                    " ASSISTANT: [SEG].</s>")
    short = prompts.eval_prompt(" The Cup ", "reasonseg", is_sentence=False)
    assert "What is The Cup in this image?" in short


def test_generation_prompt_ends_with_open_assistant_turn() -> None:
    p = prompts.eval_prompt("dog", "refcoco", answer=None)
    assert p.endswith("Please output segmentation mask. ASSISTANT:")
    assert "[SEG]" not in p


def test_matches_checkout_conversation(lisa_repo) -> None:
    from harness_lisa.upstream import import_module

    conv_lib = import_module(lisa_repo, "model.llava.conversation")
    for answer in ("[SEG].", ""):
        conv = conv_lib.conv_templates["llava_v1"].copy()
        conv.messages = []
        conv.append_message(conv.roles[0], "<image>" + "\n What is {} in this image? Please output segmentation mask.".format("a b"))
        conv.append_message(conv.roles[1], answer)
        upstream = conv.get_prompt().replace("<image>", "<im_start><image><im_end>")
        assert prompts.eval_prompt("A B", "refcoco", answer=answer or None) == upstream
