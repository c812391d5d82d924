"""Write action.yml's `inputs:` and the README's input table from the one table of inputs.

    python scripts/sync_inputs.py          # rewrite both files in place
    python scripts/sync_inputs.py --check  # exit 1 if either differs (tests run the same check)

The table is src/streampixel_distribute/settings/inputs.py; nothing here decides a fact.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from streampixel_distribute.settings.inputs import (  # noqa: E402
    ACTION_COMMANDS,
    INPUTS,
    Input,
)

ACTION_YML = ROOT / "action.yml"
README = ROOT / "README.md"
README_START = "<!-- inputs: made by scripts/sync_inputs.py from settings/inputs.py -->"
README_END = "<!-- /inputs -->"


def action_inputs() -> list[Input]:
    """The inputs the action takes: those of the commands it runs."""
    return [spec for spec in INPUTS if spec.used_by & set(ACTION_COMMANDS)]


def _yaml_string(text: str) -> str:
    # A plain YAML scalar (block context) may hold anything on one line but `: ` and ` #`, and
    # must start with an ordinary character; a JSON string is a valid double-quoted YAML scalar.
    plain = (re.fullmatch(r"[A-Za-z0-9(][^\n]*[^\s:]", text) and ": " not in text
             and " #" not in text)
    return text if plain else json.dumps(text, ensure_ascii=False)


def action_block() -> str:
    """The `inputs:` mapping of action.yml."""
    lines = ["inputs:"]
    for spec in action_inputs():
        lines.append(f"  {spec.name}:")
        lines.append(f"    description: {_yaml_string(spec.description)}")
        lines.append(f"    required: {'true' if spec.action_required else 'false'}")
        default = spec.action_default or spec.default
        if default:
            lines.append(f"    default: {json.dumps(default)}")
    return "\n".join(lines) + "\n"


def _default_cell(spec: Input) -> str:
    if spec.action_default:
        return f"`{spec.action_default}`"
    if spec.default:
        return f"`{spec.default}`"
    needed = [c.value for c in ACTION_COMMANDS if c in spec.required_for]
    if not needed:
        return "—"
    cell = "required" if len(needed) == len(ACTION_COMMANDS) else f"required ({', '.join(needed)})"
    return cell + (", or from the event payload" if spec.payload_key else "")


def readme_table() -> str:
    rows = ["| input | environment | default | meaning |", "|---|---|---|---|"]
    for spec in action_inputs():
        meaning = spec.description.replace("|", "\\|")
        rows.append(f"| `{spec.name}` | `{spec.env_name}` | {_default_cell(spec)} | {meaning} |")
    return "\n".join([README_START, *rows, README_END]) + "\n"


def synced_action_yml(text: str) -> str:
    start = text.index("\ninputs:\n") + 1
    end = text.index("\noutputs:\n", start) + 1
    return text[:start] + action_block() + "\n" + text[end:]


def synced_readme(text: str) -> str:
    start = text.index(README_START)
    end = text.index(README_END, start) + len(README_END) + 1
    return text[:start] + readme_table() + text[end:]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, sync in ((ACTION_YML, synced_action_yml), (README, synced_readme)):
        text = path.read_text(encoding="utf-8")
        new = sync(text)
        if new != text:
            stale.append(path.name)
            if not check:
                path.write_text(new, encoding="utf-8")
    if check and stale:
        print(f"out of date: {', '.join(stale)} (run python scripts/sync_inputs.py)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
