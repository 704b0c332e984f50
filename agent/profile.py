"""The agent's data folder and the account it acts for (``agent.json`` in that folder).

The folder holds the outbox, the status file, the profile and, without a keyring, the
refresh token. ``--data-dir`` names it; else ``WORKPULSE_AGENT_DIR``; else the user's
data directory (``platformdirs``: ``~/.local/share/workpulse-agent`` on Linux).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

DEFAULT_GATEWAY = "http://127.0.0.1:3000"
DEFAULT_INGEST = "127.0.0.1:50053"
PROFILE = "agent.json"
OUTBOX = "outbox.sqlite3"
STATUS = "status.json"


def data_dir(explicit: str | None = None) -> Path:
    chosen = explicit or os.environ.get("WORKPULSE_AGENT_DIR") or platformdirs.user_data_dir("workpulse-agent", False)
    path = Path(chosen).expanduser()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@dataclass
class Profile:
    gateway: str = DEFAULT_GATEWAY
    ingest: str = DEFAULT_INGEST
    email: str = ""
    organization: str = ""
    user_id: str = ""
    organization_id: str = ""
    # The policy version whose notice the user accepted (``--accept``); None: never.
    accepted_policy_version: int | None = None

    @classmethod
    def load(cls, folder: Path) -> Profile:
        try:
            data = json.loads((folder / PROFILE).read_text())
        except FileNotFoundError:
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, folder: Path) -> None:
        temporary = folder / (PROFILE + ".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2))
        os.replace(temporary, folder / PROFILE)

    @property
    def signed_in(self) -> bool:
        return bool(self.user_id)
