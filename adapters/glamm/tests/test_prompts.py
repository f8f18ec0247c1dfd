"""GLaMM's prompts: the deterministic protocol by hand, GLaMM's protocol draws, and both against
the checkout's conversation template and dataset code."""

from __future__ import annotations

import numpy as np
import pytest

from harness_glamm import prompts

SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the human's questions.")
FAKE = prompts.Templates(questions=("Q1 {class_name}?", "Q2 {class_name}.", "Q3 {class_name}!"),
                         answers=("It is [SEG].", "[SEG]."))


def test_deterministic_prompt_exact() -> None:
    assert prompts.deterministic_prompt("  The Man On LEFT ") == (
        SYSTEM + " USER: The <im_start><image><im_end> provides an overview of the picture.\n"
        "What is the man on left in this image? Please output segmentation mask. ASSISTANT: [SEG].</s>")


def test_multi_turn_prefix_only_on_first_turn() -> None:
    p = prompts.conversation([("A?", "[SEG]."), ("B?", "Sure, [SEG].")])
    assert p == (SYSTEM + " USER: The <im_start><image><im_end> provides an overview of the picture.\nA? ASSISTANT: [SEG].</s>"
                 "USER: B? ASSISTANT: Sure, [SEG].</s>")


def test_draw_up_to_three_distinct_sentences_seeded() -> None:
    d = prompts.draw(7, FAKE, seed=0, image_key="COCO_train2014_000000000001.jpg")
    assert len(d.indices) == 3 and len(set(d.indices)) == 3 and all(0 <= i < 7 for i in d.indices)
    assert d == prompts.draw(7, FAKE, seed=0, image_key="COCO_train2014_000000000001.jpg")  # repeatable
    assert prompts.draw(2, FAKE, seed=0, image_key="x.jpg").indices == (0, 1)  # fewer than three: all, in order
    draws = {prompts.draw(7, FAKE, seed=s, image_key="x.jpg").indices for s in range(20)}
    assert len(draws) > 1  # the seed matters


def test_draw_uses_numpy_choice_then_python_random() -> None:
    import random

    s = prompts.image_seed(5, "a.jpg")
    expected = tuple(int(i) for i in np.random.RandomState(s).choice(list(range(9)), size=3, replace=False))
    rng = random.Random(s)
    qa = [(rng.choice(FAKE.questions), rng.choice(FAKE.answers)) for _ in expected]
    d = prompts.draw(9, FAKE, seed=5, image_key="a.jpg")
    assert d.indices == expected and list(zip(d.questions, d.answers)) == qa
    text = d.prompt([f"S{i}" for i in range(9)])
    assert text.count("[SEG]") == 3 and text.count("provides an overview") == 1


def test_matches_checkout(glamm_repo) -> None:
    """The template lists come from the checkout; the fixed question/answer are in them; the
    conversation equals ReferSegmDataset.create_conversations + custom_collate_fn's expansion."""
    import random

    from harness_glamm.upstream import import_module

    t = prompts.load_templates(glamm_repo)
    assert prompts.DEFAULT_QUESTION == t.questions[3] and prompts.DEFAULT_ANSWER == t.answers[4]
    assert len(t.questions) == 16 and len(t.answers) == 5
    conv_lib = import_module(glamm_repo, "model.llava.conversation")
    labels = ["The Cat ", "a dog", "Left MAN"]
    rng = random.Random(3)
    templates, answers = [], []
    for _ in labels:  # create_conversations: question then answer, per label
        templates.append(rng.choice(t.questions))
        answers.append(rng.choice(t.answers))
    conv = conv_lib.conv_templates["llava_v1"].copy()
    conv.messages = []
    for i, (label, q, a) in enumerate(zip(labels, templates, answers)):
        q = q.format(class_name=label.strip().lower())
        conv.append_message(conv.roles[0], ("The <image> provides an overview of the picture.\n" + q) if i == 0 else q)
        conv.append_message(conv.roles[1], a)
    upstream = conv.get_prompt().replace("<image>", "<im_start><image><im_end>")
    mine = prompts.conversation([(prompts.question(label, q), a) for label, q, a in zip(labels, templates, answers)])
    assert mine == upstream


@pytest.mark.parametrize("bad", [{"question_template": "no slot"}, {"answer_template": "no seg"}])
def test_template_options_checked(bad) -> None:
    from harness_glamm.adapter import GlammAdapter

    with pytest.raises(ValueError):
        GlammAdapter(**bad)


def test_the_engines_glamm_3_protocol_draws_the_same_sentences() -> None:
    """``--protocol glamm-3`` (harness/data/sources/refer.py ``drawn_per_image``) keeps, per image, the sentences this
    adapter's own protocol draws with the same seed: a GLaMM run under either scores the same subset."""
    from harness.data.sources.refer import drawn_per_image
    from harness.types import GroundTruth, Sample

    gt = GroundTruth(mask={"size": [2, 2], "counts": "4"})
    for n in (2, 3, 7):
        samples = [Sample(id=f"s{i}", image="/d/COCO_train2014_000000000042.jpg", expression=f"e{i}", gt=gt, dataset="refcoco",
                          split="val") for i in range(n)]
        kept = {s.id for s in drawn_per_image(samples, 3, seed=0)}
        own = prompts.draw(n, FAKE, seed=0, image_key="COCO_train2014_000000000042.jpg").indices
        assert kept == {f"s{i}" for i in own}
