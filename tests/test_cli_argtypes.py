"""Argparse types: counts reject 0, negatives and non-integers (2.7 was silently 2) with the value named;
`rfvideo generate --num-frames 0` is an argument error, not the default length."""

from __future__ import annotations

import argparse

import pytest

from rfvideo.cli import main
from rfvideo.cli.argtypes import nonnegative_int, positive_float, positive_int


@pytest.mark.parametrize("text,value", [("1", 1), ("21", 21), ("+3", 3), (" 7 ", 7)])
def test_positive_int_accepts(text, value):
    assert positive_int(text) == value


@pytest.mark.parametrize(
    "text,message",
    [("0", "expected a positive integer, got '0'"), ("-2", "expected a positive integer, got '-2'"),
     ("2.7", "expected an integer, got '2.7'"), ("1e3", "expected an integer, got '1e3'"),
     ("", "expected an integer, got ''"), ("three", "expected an integer, got 'three'")],
)  # fmt: skip
def test_positive_int_rejects_with_the_value(text, message):
    with pytest.raises(argparse.ArgumentTypeError) as e:
        positive_int(text)
    assert str(e.value) == message


def test_nonnegative_int_and_positive_float():
    assert nonnegative_int("0") == 0
    with pytest.raises(argparse.ArgumentTypeError, match="got '-1'"):
        nonnegative_int("-1")
    assert positive_float("5.5") == 5.5
    for bad in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match=repr(bad)):
            positive_float(bad)


def _generate_frames_option() -> str:
    """`rfvideo generate`'s frame-count option (`--num-frames`, renamed `--latent-frames`)."""
    from rfvideo.cli import generate

    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    return "--latent-frames" if "--latent-frames" in parser._option_string_actions else "--num-frames"


@pytest.mark.parametrize("value", ["0", "-1", "2.7"])
def test_generate_frames_rejected_before_anything_loads(value, capsys):
    option = _generate_frames_option()
    argv = ["generate", "--config", "unused.yaml", "--prompt", "p", "--out", "o", option, value]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert f"argument {option}: expected " in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["trajectories", "--wan", "w", "--prompts", "p", "--out", "o", "--steps", "0"],
     ["trajectories", "--wan", "w", "--prompts", "p", "--out", "o", "--latent-size", "60", "-4"],
     ["precompute", "embeddings", "--wan", "w", "--prompts", "p", "--out", "o", "--batch-size", "0"]],
)  # fmt: skip
def test_other_counts_rejected(argv, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert "expected a positive integer" in capsys.readouterr().err
