#!/usr/bin/env python3
"""Writes tests/fixtures/bleu.txt: corpus BLEU as sacreBLEU computes it on
tokenized text (tokenize="none", default exponential smoothing), for cases that
exercise clipping, the brevity penalty, smoothing of empty n-gram matches, a
perfect match and an empty hypothesis.

Format, one case after another:
    # NAME
    H hypothesis tokens          (one line per sentence)
    R reference tokens           (one per sentence, same order)
    = score p1 p2 p3 p4 bp sys_len ref_len

    pip install sacrebleu
    python3 tools/bleu_fixture.py
"""

import os

import sacrebleu

CASES = {
    "multi30k_like": (
        [
            "a man in an orange hat starring at something .",
            "a boston terrier is running on lush green grass in front of a white fence .",
            "a girl in karate uniform breaking a stick with a front kick .",
            "five people wearing winter jackets and helmets stand in the snow .",
            "people are fixing the roof of a house .",
        ],
        [
            "a man in an orange hat staring at something .",
            "a boston terrier is running on lush green grass in front of a white fence .",
            "a girl in a karate uniform is breaking a board with a kick .",
            "five people in winter jackets and helmets are standing in the snow .",
            "several men are fixing the roof of a house .",
        ],
    ),
    "clipped_repeats": (
        ["the the the the the the the .", "a cat sat on the mat ."],
        ["the cat is on the mat .", "a cat sat on a mat ."],
    ),
    "short_hypotheses": (
        ["a dog runs .", "two men ."],
        ["a brown dog runs across the yard .", "two men are talking on a bench ."],
    ),
    "no_four_gram_match": (
        ["dog a runs fast in park the", "big house red"],
        ["a dog runs fast in the park", "a big red house"],
    ),
    "perfect": (
        ["a little girl climbing into a wooden playhouse ."],
        ["a little girl climbing into a wooden playhouse ."],
    ),
    "empty_hypothesis": (
        ["", "a man sleeps ."],
        ["a woman reads a book .", "a man sleeps on a bench ."],
    ),
}


def main():
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "bleu.txt")
    with open(out, "w") as f:
        for name, (hyps, refs) in CASES.items():
            b = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True)
            f.write(f"# {name}\n")
            for h in hyps:
                f.write(f"H {h}\n")
            for r in refs:
                f.write(f"R {r}\n")
            nums = [b.score, *b.precisions, b.bp, b.sys_len, b.ref_len]
            f.write("= " + " ".join(repr(float(x)) for x in nums) + "\n")
            print(name, b)


if __name__ == "__main__":
    main()
