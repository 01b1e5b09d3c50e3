"""Write examples/data/reviews-{train,test}.csv: a SYNTHETIC sentiment set (2000 / 500 rows, text,label).

Nothing here is real review text. Each review is one or two clauses built from small word lists:
    [opener] the <thing> was [intensifier] [not] <sentiment word> [filler]
A clause's polarity is its word's polarity, flipped by "not"/"never"/"hardly" ("not good" is
negative). With two clauses joined by "but", the label is the second clause's polarity; joined by
"and", both clauses agree. So a bag of words alone cannot be perfect: "good", "bad" and "not" occur
in both classes and word order decides. 5% of labels are then flipped at random (label noise), so
no model should reach 100%. Labels: "positive" / "negative". Seeded: identical files on every run.
Usage: python examples/make_text.py
"""

import csv
import pathlib

import numpy as np

N_TRAIN, N_TEST, LABEL_NOISE = 2000, 500, 0.05
POSITIVE = [
    "good",
    "great",
    "excellent",
    "wonderful",
    "enjoyable",
    "delightful",
    "solid",
    "lovely",
    "impressive",
    "fun",
    "charming",
    "brilliant",
    "pleasant",
    "satisfying",
    "superb",
]
NEGATIVE = [
    "bad",
    "terrible",
    "awful",
    "boring",
    "dull",
    "disappointing",
    "poor",
    "weak",
    "bland",
    "annoying",
    "mediocre",
    "tedious",
    "clumsy",
    "forgettable",
    "painful",
]
THINGS = [
    "movie",
    "plot",
    "acting",
    "soundtrack",
    "ending",
    "service",
    "food",
    "book",
    "story",
    "camera",
    "battery",
    "screen",
    "design",
    "price",
    "staff",
    "room",
    "dialogue",
    "pacing",
    "cast",
    "game",
]
OPENERS = ["", "", "honestly", "overall", "I think", "to be fair", "in my opinion", "frankly", "well"]
INTENSIFIERS = ["", "", "", "very", "really", "quite", "extremely", "so", "pretty", "rather"]
NEGATIONS = ["not", "never", "hardly", "not at all"]
FILLERS = [
    "",
    "",
    "",
    "for the price",
    "this time",
    "to me",
    "if you ask me",
    "on the whole",
    "from start to finish",
    "as expected",
    "for a weekend",
    "in the end",
]


def clause(rng, polarity: int) -> str:
    """A clause of the given polarity (+1/-1); 30% of the time through a negated opposite word."""
    negate = rng.random() < 0.3
    word_polarity = -polarity if negate else polarity
    word = rng.choice(POSITIVE if word_polarity > 0 else NEGATIVE)
    parts = [
        rng.choice(OPENERS),
        "the",
        rng.choice(THINGS),
        "was",
        rng.choice(INTENSIFIERS) if not negate else "",
        rng.choice(NEGATIONS) if negate else "",
        word,
        rng.choice(FILLERS),
    ]
    return " ".join(p for p in parts if p)


def review(rng) -> tuple[str, str]:
    polarity = 1 if rng.random() < 0.5 else -1
    r = rng.random()
    if r < 0.65:
        text = clause(rng, polarity)
    elif r < 0.8:  # "x but y": the second clause decides
        text = f"{clause(rng, -polarity)} but {clause(rng, polarity)}"
    else:
        text = f"{clause(rng, polarity)} and {clause(rng, polarity)}"
    if rng.random() < LABEL_NOISE:
        polarity = -polarity
    text = text[0].upper() + text[1:] + rng.choice([".", ".", "!", "..."])
    return text, "positive" if polarity > 0 else "negative"


def main() -> None:
    out = pathlib.Path(__file__).resolve().parent / "data"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    for name, n in (("reviews-train.csv", N_TRAIN), ("reviews-test.csv", N_TEST)):
        with open(out / name, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["text", "label"])
            w.writerows(review(rng) for _ in range(n))
        print(f"wrote {out / name} ({n} rows)")


if __name__ == "__main__":
    main()
