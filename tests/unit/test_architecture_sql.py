"""SQL lives in storage/ only: no string in bot/ or handlers/ starts like an SQL statement.

Parsed with `ast`, so text in comments and docstrings that merely mentions a table never counts; a
string constant (or the first part of an f-string) that opens with an SQL keyword does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "handlers")
# how an SQL statement opens (a keyword, then a word the statement needs next)
SQL = re.compile(
    r"^\s*(SELECT\s+[\w*(]|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|"
    r"CREATE\s+(UNIQUE\s+)?(TABLE|INDEX|VIEW|TRIGGER)\b|DROP\s+(TABLE|INDEX)\b|ALTER\s+TABLE\b|PRAGMA\s+\w|"
    r"BEGIN(\s+(IMMEDIATE|EXCLUSIVE|DEFERRED|TRANSACTION))?\s*;?\s*$|COMMIT\s*;?\s*$|ROLLBACK\b|"
    r"WITH\s+\w+\s+AS\s*\(|REPLACE\s+INTO\b|VACUUM\b)",
)  # upper case, as the house writes SQL: "Select a wallet" is a sentence


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string constant, an f-string by its opening text."""
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add((node.lineno, first.value))
    return sorted(found)


def _docstrings(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                lines.add(first.value.lineno)
    return lines


def sql_outside_storage() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            docs = _docstrings(tree)
            for line, text in _strings(tree):
                if line not in docs and SQL.match(text):
                    found.append(f"{path.relative_to(ROOT)}:{line}: {text.strip().splitlines()[0][:80]}")
    return found


def test_no_sql_outside_storage() -> None:
    found = sql_outside_storage()
    assert not found, "SQL belongs in a repository under storage/:\n" + "\n".join(found)


def test_the_check_sees_sql_in_a_string_and_not_in_words() -> None:
    tree = ast.parse(
        'db.fetchone("SELECT value FROM meta WHERE key=?")\n'
        'x = f"UPDATE users SET blocked={1}"\n'
        'note = "Select a wallet to update"\n'
        'begin = "BEGIN IMMEDIATE"\n'
    )
    hits = [text for _, text in _strings(tree) if SQL.match(text)]
    assert hits == ["SELECT value FROM meta WHERE key=?", "UPDATE users SET blocked=", "BEGIN IMMEDIATE"]
