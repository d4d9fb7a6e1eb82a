"""The README, the changelog and docs/ against the code they describe: the verbs table against the CLI's
registered commands, the configuration key table against the settings model, and every relative link against the
files and headings it points to. Each test fails on a real drift: a verb added without a row, a settings key renamed
in the code but not in the table (or the reverse), a page moved without its links."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from urllib.parse import unquote

import pytest
import typer

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_BYTES = 12_000

_FENCE = re.compile(r"^\s*(```|~~~)")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a `# comment` in a bash block is not a heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in _CELL_SPLIT.split(row.strip().strip("|"))]


def _section(text: str, heading: str) -> list[str]:
    """The prose lines under `heading` (e.g. '## The command line') up to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = _prose_lines(text)
    assert heading in lines, f"no heading {heading!r}"
    body = []
    for line in lines[lines.index(heading) + 1 :]:
        match = re.match(r"^(#{1,6})\s", line)
        if match and len(match.group(1)) <= level:
            break
        body.append(line)
    return body


def _table(lines: list[str], header: list[str] | None = None) -> list[list[str]]:
    """The body rows of the first markdown table in `lines` (or the first whose header is `header`)."""
    for i, line in enumerate(lines[:-1]):
        if not line.lstrip().startswith("|") or not re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", lines[i + 1]):
            continue
        if header is not None and _cells(line) != header:
            continue
        rows = []
        for row in lines[i + 2 :]:
            if not row.lstrip().startswith("|"):
                break
            rows.append(_cells(row))
        return rows
    raise AssertionError(f"no table with header {header}" if header else "no table")


# --- the README's verbs table against the CLI -------------------------------------------------------------------


def readme_verbs(text: str) -> list[str]:
    """The verb of each row of the README's `## The command line` table, in order (duplicates kept)."""
    verbs = []
    for row in _table(_section(text, "## The command line")):
        match = re.match(r"^`leadscore ([a-z][a-z-]*)(?: [^`]*)?`", row[0])
        assert match, f"a row of the verbs table does not start with `leadscore VERB ...`: {row[0]!r}"
        verbs.append(match.group(1))
    return verbs


def test_the_readme_has_one_row_per_registered_verb():
    from leadscore.pipelines.cli import app

    registered = set(typer.main.get_command(app).commands)
    verbs = readme_verbs(README.read_text(encoding="utf-8"))
    duplicated = sorted({v for v in verbs if verbs.count(v) > 1})
    assert not duplicated, f"verbs with more than one row in the README's table: {duplicated}"
    assert set(verbs) == registered, (
        f"README rows without a command: {sorted(set(verbs) - registered)}; "
        f"commands without a README row: {sorted(registered - set(verbs))}"
    )


def test_readme_verbs_reads_the_rows_and_refuses_a_stray_one():
    table = "## The command line\n\n| verb | what |\n|---|---|\n| `leadscore sample-data --out DIR` | x \\| y |\n"
    assert readme_verbs(table + "| `leadscore init DIR` | z |\n\n## Next\n| `leadscore x` | y |\n") == [
        "sample-data",
        "init",
    ]
    with pytest.raises(AssertionError, match="does not start with"):
        readme_verbs(table + "| `--level account` | z |\n")


# --- docs/configuration.md's key table against the settings model -----------------------------------------------


def _models_in(annotation) -> list[type]:
    """The pydantic models an annotation holds directly: `Model`, `Model | None`."""
    from pydantic import BaseModel

    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _fields(model: type) -> dict:
    """A model's keys as written in a config file (fields excluded from the model's dump, like the config file's
    own folder, are set by the loader, not by the user)."""
    return {name: field for name, field in model.model_fields.items() if not field.exclude}


def _is_placeholder(segment: str) -> bool:
    return segment.startswith("<") and segment.endswith(">")


def _resolves(annotation, segments: list[str]) -> bool:
    """Whether a documented key path exists below `annotation`: a literal segment names a field (or, in a
    `dict[str, X]`, a key); `<name>` stands for any field or key; a final `*` for every field of a section."""
    if not segments:
        return True
    head, rest = segments[0], segments[1:]
    models = _models_in(annotation)
    if head == "*":
        return not rest and bool(models)
    for model in models:
        fields = _fields(model)
        children = list(fields.values()) if _is_placeholder(head) else [fields[head]] if head in fields else []
        if any(_resolves(child.annotation, rest) for child in children):
            return True
    if typing.get_origin(annotation) is dict:
        return _resolves(typing.get_args(annotation)[1], rest)
    return False


def documented_keys(rows: list[list[str]]) -> list[tuple[str, ...]]:
    """Every key path the key column names. A row may group keys: `spine.delay_days`, `every_days` means
    `spine.every_days` (a bare name is a sibling of the dotted key before it)."""
    keys = []
    for row in rows:
        parent: tuple[str, ...] = ()
        tokens = re.findall(r"`([^`]*)`", row[0])
        assert tokens, f"a row of the key table names no key: {row[0]!r}"
        for token in tokens:
            assert re.fullmatch(r"[a-z_][a-z0-9_]*|<[a-z_]+>|\*", token.split(".")[-1]) and all(
                re.fullmatch(r"[a-z_][a-z0-9_]*|<[a-z_]+>", part) for part in token.split(".")[:-1]
            ), f"not a config key in the key column: {token!r} (row {row[0]!r})"
            path = tuple(token.split("."))
            if len(path) == 1 and parent:
                path = (*parent, *path)
            else:
                parent = path[:-1]
            keys.append(path)
    return keys


def undocumented_and_unknown(settings_model: type, keys: list[tuple[str, ...]]) -> tuple[list[str], list[str]]:
    """(settings keys the table misses, table keys the settings do not have). Every top-level key must appear; for
    a section (a field that is a model), each of its keys must appear as `section.key...`, `section.*` or
    `section.<name>...`."""
    unknown = [".".join(key) for key in keys if not _resolves(settings_model, list(key))]
    missing = []
    for name, field in _fields(settings_model).items():
        mentioned = [key for key in keys if key[0] == name]
        if not mentioned:
            missing.append(name)
            continue
        for model in _models_in(field.annotation):
            for sub in _fields(model):
                if not any(len(k) > 1 and (k[1] in (sub, "*") or _is_placeholder(k[1])) for k in mentioned):
                    missing.append(f"{name}.{sub}")
    return missing, unknown


def test_the_configuration_page_documents_every_settings_key_and_no_other():
    from leadscore.pipelines.config import Settings

    rows = _table((DOCS / "configuration.md").read_text(encoding="utf-8").splitlines(), ["key", "meaning", "default"])
    missing, unknown = undocumented_and_unknown(Settings, documented_keys(rows))
    assert not missing, f"settings keys missing from docs/configuration.md: {missing}"
    assert not unknown, f"docs/configuration.md names keys the settings do not have: {unknown}"


def test_the_key_check_catches_a_missing_and_an_invented_key():
    from pydantic import BaseModel

    class Capacity(BaseModel):
        per_week: int = 0
        teams: dict[str, int] = {}

    class Table(BaseModel):
        path: str = ""
        custom: dict[str, Capacity] = {}

    class Tables(BaseModel):
        leads: Table = Table()
        events: Table | None = None

    class Grades(BaseModel):
        capacity: Capacity | None = None
        timezone: str = "UTC"

    class Model(BaseModel):
        name: str = ""
        tables: Tables | None = None
        grades: Grades = Grades()

    def check(*rows: str):
        return undocumented_and_unknown(Model, documented_keys([[row] for row in rows]))

    full = (
        "`name`",
        "`tables.<name>.path`",
        "`tables.leads.custom.<feature>`",
        "`grades.capacity.per_week`, `teams`",
        "`grades.timezone`",
    )
    assert check(*full) == ([], [])
    assert check("`name`", "`tables.*`", "`grades.*`") == ([], [])
    assert check(*full[:-1]) == (["grades.timezone"], [])
    assert check(*full[1:]) == (["name"], [])
    assert check(*full, "`tables.<name>.sql_url`") == ([], ["tables.<name>.sql_url"])
    assert check(*full, "`grades.capacity.per_week`, `by`") == ([], ["grades.capacity.by"])
    assert check(*full, "`grades.timezone.*`") == ([], ["grades.timezone.*"])
    with pytest.raises(AssertionError, match="not a config key"):
        check(*full, "(`--level account`)")


# --- size and links ---------------------------------------------------------------------------------------------


def test_the_readme_fits_a_screen_or_two():
    size = len(README.read_bytes())
    assert size < README_MAX_BYTES, f"README.md is {size} bytes; the manual belongs in docs/ (limit {README_MAX_BYTES})"


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation other than `-` and `_` removed,
    each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link or image: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    return "".join(ch for ch in text if ch.isalnum() or ch in "-_ ").replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for line in _prose_lines(markdown):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = github_slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def relative_links(markdown: str) -> list[str]:
    """The targets of the inline links and images outside code: no URL with a scheme, no mail address."""
    targets = []
    for line in _prose_lines(markdown):
        line = re.sub(r"`[^`]*`", "", line)
        for target in re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                targets.append(target)
    return targets


def _pages() -> list[Path]:
    return [README, REPO / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path_part, _, fragment = target.partition("#")
        destination = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not destination.exists():
            problems.append(f"{target}: no such file")
        elif (
            fragment
            and destination.suffix == ".md"
            and unquote(fragment).lower() not in anchors(destination.read_text(encoding="utf-8"))
        ):
            problems.append(f"{target}: no heading with that anchor in {destination.name}")
    return problems


@pytest.mark.parametrize("page", _pages(), ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_reaches_a_file_and_heading(page):
    assert page.exists()
    assert not broken_links(page)


def test_the_link_check_knows_github_anchors_and_sees_a_broken_link(tmp_path):
    assert github_slug("Bad input: what happens to each kind") == "bad-input-what-happens-to-each-kind"
    assert github_slug("Closing the loop: the score history and `leadscore monitor`") == (
        "closing-the-loop-the-score-history-and-leadscore-monitor"
    )
    assert github_slug("Issue 20: predict, 1M leads (50.9 s)") == "issue-20-predict-1m-leads-509-s"
    assert anchors("# A\n```bash\n# not a heading\n```\n## A\n") == {"a", "a-1"}
    (tmp_path / "b.md").write_text("# Here\n", encoding="utf-8")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md) [ok](b.md#here) [ok](#self) [web](https://example.org/x) `[code](nowhere.md)`\n"
        "# Self\n[gone](c.md) [bad](b.md#there)\n",
        encoding="utf-8",
    )
    assert broken_links(page) == ["c.md: no such file", "b.md#there: no heading with that anchor in b.md"]


def test_the_docs_index_lists_every_page():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    listed = {target.partition("#")[0] for target in relative_links(index)}
    pages = {page.name for page in DOCS.glob("*.md")} - {"index.md"}
    assert pages <= listed, f"docs pages missing from docs/index.md: {sorted(pages - listed)}"
