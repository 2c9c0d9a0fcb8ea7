"""Router fixtures: a tiny fake embedder for exact assertions, real MiniLM loaded once."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from registry.spec import ExpertKind, ExpertSpec
from routers.base import ExpertTable
from routers.embedder import CachedEmbedder, Embedder, SentenceTransformerEmbedder
from tests.fakes import FakeEmbedder


def expert(
    name: str, *categories: str, cost: float = 1.0, exemplars: Sequence[str] = ()
) -> ExpertSpec:
    return ExpertSpec(
        name=name,
        kind=ExpertKind.SIMULATOR,
        categories=list(categories),
        exemplars=list(exemplars),
        cost=cost,
    )


def table(*experts: ExpertSpec, revision: int = 1) -> ExpertTable:
    return ExpertTable(revision=revision, experts=tuple(experts))


# --- a small labelled data set for real-MiniLM tests --------------------------------------

CATEGORIES = {
    "math": [
        "Solve the equation 3x + 7 = 22 for x.",
        "What is the derivative of sin(x) * x^2?",
        "Compute the integral of 1/x from 1 to e.",
        "Prove that the square root of 2 is irrational.",
        "What is the probability of rolling two sixes with two dice?",
        "Factor the polynomial x^3 - 8.",
        "Find the eigenvalues of the matrix [[2, 1], [1, 2]].",
        "Does the series sum of 1/n^2 converge?",
        "How many subsets does a set with 10 elements have?",
        "What is the area of a triangle with sides 3, 4 and 5?",
    ],
    "code": [
        "Write a Python function that reverses a linked list.",
        "Why does my JavaScript promise never resolve?",
        "Fix this SQL query: SELECT * FROM users WHERE id = ;",
        "How do I read a CSV file with pandas?",
        "Explain what a segmentation fault in C means.",
        "Write a shell command that finds all files larger than 1 GB.",
        "My React component re-renders on every keystroke, why?",
        "How do I make a button's text bold in CSS?",
        "What does git rebase do compared to git merge?",
        "Write a Dockerfile for a Node.js web server.",
    ],
    "creative": [
        "Write a short poem about the autumn rain.",
        "Tell me a bedtime story about a brave little fox.",
        "Compose song lyrics about lost love.",
        "Write a haiku about the ocean at dawn.",
        "Invent a fairy tale set in a city of glass.",
        "Write the opening paragraph of a mystery novel.",
        "Describe a sunset in vivid, poetic language.",
        "Write a funny dialogue between a pirate and a robot.",
        "Give me a rhyming birthday verse for my grandmother.",
        "Write a ghost story that takes place in a lighthouse.",
    ],
}
HELD_OUT = [
    ("Find all real roots of x^2 - 5x + 6 = 0.", "math"),
    ("What is the limit of (1 + 1/n)^n as n goes to infinity?", "math"),
    ("How many ways can 5 people sit around a round table?", "math"),
    ("My Rust program fails to compile with a borrow checker error, help.", "code"),
    ("Write a bash script that renames all .txt files in a folder.", "code"),
    ("How do I center a div with CSS flexbox?", "code"),
    ("Write a limerick about a cat who loves cheese.", "creative"),
    ("Write a sonnet about the stars and longing.", "creative"),
    ("Create a short sci-fi story about a robot who learns to paint.", "creative"),
]
OUT_OF_DOMAIN = ["xq zzv plorf blanket wug", "🙂🙂🙂", "qwerty uiop zxcv", "blorp"]
MIN_SIMILARITY = 0.19
"""Measured on these sets: held-out queries' best cosine 0.21-0.53, gibberish's 0.16-0.18."""


def experts(revision: int = 1, *extra: ExpertSpec) -> ExpertTable:
    """One specialist per category of `CATEGORIES`, a costlier generalist, and `extra`."""
    return table(
        expert("mathstral", "math"),
        expert("coder", "code"),
        expert("writer", "creative"),
        expert("generalist", "*", cost=2.0),
        *extra,
        revision=revision,
    )


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder(["math", "code", "poem", "story", "integral", "python", "rhyme", "law"])


@pytest.fixture(scope="session")
def minilm_raw() -> SentenceTransformerEmbedder:
    """Real all-MiniLM-L6-v2, loaded once per session, no cache."""
    embedder = SentenceTransformerEmbedder()
    embedder.load()
    return embedder


@pytest.fixture(scope="session")
def minilm(minilm_raw: SentenceTransformerEmbedder) -> Embedder:
    """Real all-MiniLM-L6-v2 behind a cache shared by the session (vectors are deterministic)."""
    return CachedEmbedder(minilm_raw, 4096)
