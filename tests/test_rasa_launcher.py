"""The launcher hands Rasa its token as one argument, whatever the token's first character."""

from __future__ import annotations

import argparse

import pytest

from dialogs.rasa_launcher import rasa_args


@pytest.mark.parametrize("args, token, expected", [
    (["run", "--port", "5005"], "abc", ["run", "--port", "5005", "--auth-token=abc"]),
    (["run"], "-starts-with-a-dash", ["run", "--auth-token=-starts-with-a-dash"]),
    (["run"], None, ["run"]),
    (["run"], "", ["run"]),
    (["train"], "abc", ["train"]),  # only the server takes a token
])
def test_rasa_args(args, token, expected):
    assert rasa_args(args, token) == expected


def test_a_token_beginning_with_a_dash_parses_as_the_value():
    parser = argparse.ArgumentParser()  # as rasa's own parser reads -t/--auth-token
    parser.add_argument("-t", "--auth-token")
    assert parser.parse_args(rasa_args(["run"], "-xyz")[1:]).auth_token == "-xyz"
    with pytest.raises(SystemExit):
        parser.parse_args(["--auth-token", "-xyz"])  # the old form: "expected one argument"
