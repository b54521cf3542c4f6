"""The command-line help is bilingual in one style: Chinese first, then the English in brackets
("中文 (English)"), for every command, group, option and argument that has help (issue 18, item 6).
And the one-line summaries of ``tanfang --help`` and of each group fit their column, uncut."""

from __future__ import annotations

import re
import unicodedata

import click
import pytest

from tanfang.cli import cli

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
ENGLISH_IN_BRACKETS = re.compile(r"\([^()]*[A-Za-z]{2,}[^()]*\)")
BRACKETED = re.compile(r"\([^()]*\)|`[^`]*`")  # the English, and `quoted commands`
# two lowercase English words in a row outside the brackets: an English phrase where Chinese belongs
ENGLISH_PHRASE = re.compile(r"\b[a-z]{2,} [a-z]{2,}\b")
WIDTH = 80  # click's help width (at most 80 columns)


def _walk(cmd: click.Command, ctx: click.Context):
    yield ctx.command_path, cmd, ctx
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, click.Context(sub, info_name=name, parent=ctx))


ROOT = click.Context(cli, info_name="tanfang")
COMMANDS = list(_walk(cli, ROOT))


def _helps():
    for path, cmd, ctx in COMMANDS:
        yield path, cmd.help
        for p in cmd.get_params(ctx):  # the help option too
            if isinstance(p, click.Option) or getattr(p, "help", None):
                yield f"{path} {p.opts[0] if isinstance(p, click.Option) else p.human_readable_name}", p.help


HELPS = list(_helps())


def style_problem(text: str | None) -> str | None:
    """Why ``text`` is not in the house style, or None. Each paragraph is checked."""
    if not text or not text.strip():
        return "no help"
    for para in re.split(r"\n\s*\n", text.strip()):
        para = " ".join(para.split())
        if not CJK.match(para):
            return f"does not start with Chinese: {para[:40]!r}"
        if not ENGLISH_IN_BRACKETS.search(para):
            return f"no English in brackets: {para[:60]!r}"
        phrase = ENGLISH_PHRASE.search(BRACKETED.sub("|", para))
        if phrase:
            return f"English outside the brackets ({phrase.group()!r}): {para[:60]!r}"
    return None


@pytest.mark.parametrize("where,text", HELPS, ids=[w for w, _ in HELPS])
def test_help_is_chinese_then_english_in_brackets(where, text):
    assert style_problem(text) is None, f"{where}: {style_problem(text)}"


def test_the_check_catches_what_it_should():
    assert style_problem(None) == "no help"
    assert style_problem("List tasks, most urgent first.").startswith("does not start")
    assert style_problem("JSON 输出 (JSON output)").startswith("does not start")
    assert style_problem("只看未结案的").startswith("no English")
    assert style_problem("评估 What the model understands (assess)").startswith("English outside")
    assert style_problem("以 JSON 输出 (print JSON)") is None
    assert style_problem("列出任务 (list tasks).\n\nFor cron only.").startswith("does not start")


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


@pytest.mark.parametrize("path,group", [(p, c) for p, c, _ in COMMANDS if isinstance(c, click.Group)],
                         ids=[p for p, c, _ in COMMANDS if isinstance(c, click.Group)])
def test_command_summaries_fit_the_listing(path, group):
    """``tanfang --help`` (and each group's) lists one summary a command: the first sentence, whole
    (not cut to "..."), bilingual, and no wider on screen than its column (Chinese is two wide)."""
    limit = WIDTH - 6 - max(len(n) for n in group.commands)
    for name, sub in group.commands.items():
        short = sub.get_short_help_str(limit)
        assert not short.endswith("..."), f"{path} {name}: summary cut: {short!r}"
        assert _width(short) <= limit, f"{path} {name}: summary {_width(short)} columns wide (> {limit}): {short!r}"
        assert style_problem(short) is None, f"{path} {name}: {style_problem(short)}"
