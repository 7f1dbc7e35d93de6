"""What a red-team attack may spend (kscu.attack), as one dataclass shared by the UI, the CLI and
Python; kept apart from the attacks so the CLI builds its flags without importing torch."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

ATTACKS = ("embedding", "rephrase", "soft")
POSITIONS = ("prefix", "placeholder")


def _budget(default: Any, help: str, cli: bool = True) -> Any:
    return field(default=default, metadata={"help": help, "cli": cli})


@dataclass(frozen=True)
class AttackBudget:
    """How much an attacker may spend. The defaults finish the embedding attack on one edit of the
    embedded demo model in about 25 s on 2 CPU cores (benchmarks/red_team.py measures it); on
    "striped" 400 steps of 5 tokens brought the concept back on 21 % of images, 200 steps of 3 on 4-8 %."""

    prompts: int = _budget(24, "attack images per model (erase-set prompts, one seed each)")
    steps: int = _budget(400, "optimisation steps of the embedding and soft attacks")
    lr: float = _budget(3e-2, "learning rate of the embedding and soft attacks")
    tokens: int = _budget(5, "learned tokens of the embedding attack (1 to 8)")
    position: str = _budget("prefix", "where the learned tokens go: prefix (before the prompt) or placeholder (in place of the concept)")
    references: int = _budget(24, "reference images of the concept the unedited model draws from the attack prompts (own seeds)", cli=False)
    batch: int = _budget(4, "reference latents per optimisation step", cli=False)
    num_steps: int = _budget(25, "DDIM steps of every image drawn", cli=False)
    guidance: float = _budget(3.0, "guidance scale of every image drawn", cli=False)
    seed: int = _budget(4321, "seed of the prompts, the images and the attack's noise", cli=False)

    def check(self) -> None:
        """ValueError naming the field and what to do, before any work."""
        for name in ("prompts", "steps", "tokens", "references", "batch", "num_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: {value!r} is not a whole number of at least 1")
        if self.tokens > 8:
            raise ValueError(f"tokens: {self.tokens} learned tokens is more than 8; an attack this wide is a soft prompt (attack 'soft')")
        if not 0 < self.lr <= 1:
            raise ValueError(f"lr: {self.lr} is out of range; give a learning rate above 0 and at most 1 (default {AttackBudget.lr})")
        if self.position not in POSITIONS:
            raise ValueError(f"position: {self.position!r} is unknown; choose one of {', '.join(POSITIONS)}")
        if self.guidance < 0:
            raise ValueError(f"guidance: {self.guidance} is negative; give 0 or more")


def budget_fields() -> list[tuple[str, Any, str]]:
    """(name, default, help) of the fields a user sets (the CLI's flags)."""
    return [(f.name, f.default, f.metadata["help"]) for f in fields(AttackBudget) if f.metadata["cli"]]
