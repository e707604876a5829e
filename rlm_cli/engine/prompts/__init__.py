"""What the root model is told: the method (the system prompt), the context's metadata in the
first message, and each turn's feedback.

- facts.py: RunFacts, the run's figures, and the limits as the root reads them
- method.py: the templates (profiles/*.txt, or a --system-prompt file) and their {placeholders}
- first.py: the first message (the input's name, size, sample lines, limits, Python)
- feedback.py: each turn's feedback, a reply with no code, a refused fan-out, the last turn
"""

from rlm_cli.engine.prompts.facts import RunFacts
from rlm_cli.engine.prompts.feedback import (
    LAST_TURN,
    LIMIT_REACHED,
    NO_CODE,
    cell_feedback,
    last_turn,
    refused_note,
)
from rlm_cli.engine.prompts.first import FILES_SHOWN, FORMAT_NAMES, first_message, safe
from rlm_cli.engine.prompts.method import (
    HELPERS,
    PLACEHOLDERS,
    RLM_QUERY,
    method_text,
    placeholder_values,
    system_prompt,
)

__all__ = [
    "FILES_SHOWN",
    "FORMAT_NAMES",
    "HELPERS",
    "LAST_TURN",
    "LIMIT_REACHED",
    "NO_CODE",
    "PLACEHOLDERS",
    "RLM_QUERY",
    "RunFacts",
    "cell_feedback",
    "first_message",
    "last_turn",
    "method_text",
    "placeholder_values",
    "refused_note",
    "safe",
    "system_prompt",
]
