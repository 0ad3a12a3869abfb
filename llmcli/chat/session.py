"""The state of one chat: the system prompt, the messages, the sampling settings.

`ChatSession` is plain data with small operations (`/undo`, `/retry`, `/clear`, trimming
to the context window, save and load); it knows nothing of terminals or models, so the
slash commands and the loop stay thin and the state is tested on its own.

Decisions:
- The system prompt lives apart from the messages: `/clear`, `/undo` and trimming never
  touch it.
- A reply stopped with Ctrl-C stays in the conversation with `interrupted=True`; the
  model sees the partial text as it is (that is what was said), the transcript and the
  saved file mark it.
- Trimming drops the oldest messages from the session for good, so `/show prompt` always
  shows what the model really receives; `dropped` counts them for the stats line.
- A saved file is written to a temporary file in the same directory and renamed over the
  target: an interrupted `/save` never leaves half a file.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from llmcli.errors import LlmcliError
from llmcli.sampling import SamplingSettings
from llmcli.prompting import Message

FILE_FORMAT = "llmcli-chat"
FILE_VERSION = 1

# What `/set` may change, in the order `/show settings` lists them.
SETTABLE = ("temperature", "top_p", "top_k", "min_p", "max_new_tokens", "seed", "repetition_penalty")
OPTIONAL = {"top_p", "top_k", "min_p", "seed"}  # `none`/`off` turns these off
INTEGERS = {"top_k", "max_new_tokens", "seed"}


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "user" or "assistant"
    content: str
    interrupted: bool = False


@dataclass
class ChatSession:
    model: str = ""
    system: str | None = None
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    messages: list[ChatMessage] = field(default_factory=list)
    dropped: int = 0  # messages trimmed away to fit the context window, since the last /clear

    # ------------------------------------------------------------------ the conversation

    def add_user(self, text: str) -> None:
        self.messages.append(ChatMessage("user", text))

    def add_assistant(self, text: str, *, interrupted: bool = False) -> None:
        self.messages.append(ChatMessage("assistant", text, interrupted))

    def prompt_messages(self) -> list[Message]:
        """What the chat template gets: the system prompt, then the turns."""
        system = [Message("system", self.system)] if self.system else []
        return system + [Message(m.role, m.content) for m in self.messages]

    def last_reply(self) -> ChatMessage | None:
        return next((m for m in reversed(self.messages) if m.role == "assistant"), None)

    def clear(self) -> int:
        """Forget every turn (the system prompt stays); return how many messages went."""
        n = len(self.messages)
        self.messages.clear()
        self.dropped = 0
        return n

    def undo(self) -> list[ChatMessage]:
        """Drop the last exchange: the last user message and any reply after it."""
        last_user = next((i for i in range(len(self.messages) - 1, -1, -1) if self.messages[i].role == "user"), None)
        if last_user is None:
            raise LlmcliError("nothing to undo")
        removed = self.messages[last_user:]
        del self.messages[last_user:]
        return removed

    def pop_reply_for_retry(self) -> ChatMessage | None:
        """Remove the last reply so it can be generated again; return it (None if the
        conversation ends with a user message that never got one)."""
        if not self.messages:
            raise LlmcliError("nothing to retry yet", "say something first")
        if self.messages[-1].role == "user":
            return None
        return self.messages.pop()

    def keep_last(self, count: int) -> int:
        """Keep only the last `count` messages (after trimming to the window); return how many went."""
        gone = len(self.messages) - count
        if gone > 0:
            del self.messages[:gone]
            self.dropped += gone
        return max(gone, 0)

    # ------------------------------------------------------------------ settings

    def set(self, key: str, value: str) -> SamplingSettings:
        """`/set KEY VALUE`: parse, validate with the engine's ranges, apply; return the new settings."""
        key = key.strip().lower().replace("-", "_")
        if key not in SETTABLE:
            import difflib

            near = difflib.get_close_matches(key, SETTABLE, n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}? " if near else ""
            raise LlmcliError(f"unknown setting '{key}'", f"{hint}settable: {', '.join(SETTABLE)}")
        parsed = parse_setting(key, value)
        settings = replace(self.settings, **{key: parsed})
        settings.validate()
        self.settings = settings
        return settings

    # ------------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "model": self.model,
            "system": self.system,
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.settings).items()},
            "messages": [
                {"role": m.role, "content": m.content} | ({"interrupted": True} if m.interrupted else {})
                for m in self.messages
            ],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the session as JSON, atomically: a temp file in the same directory, then rename."""
        target = Path(path).expanduser()
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"
        if not target.parent.is_dir():
            raise LlmcliError(f"cannot save to {target}: no such directory {target.parent}", "give a path in a directory that exists")
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            full = e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
            hint = "free some disk space, or save somewhere else" if full else "check the path and its permissions"
            raise LlmcliError(f"cannot save to {target}: {e.strerror or e}", hint + "; the chat is kept") from e
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> ChatSession:
        """Read a file written by `save`; anything else is a one-line error."""
        source = Path(path).expanduser()
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LlmcliError(f"no such file: {source}", "give the path of a chat saved with /save") from None
        except (OSError, UnicodeDecodeError) as e:
            raise LlmcliError(f"cannot read {source}: {e}", "give the path of a chat saved with /save") from e
        except json.JSONDecodeError as e:
            raise LlmcliError(f"{source} is not JSON: {e}", "load a file written by /save") from e
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Any, source: Path | str = "session") -> ChatSession:
        bad = LlmcliError(f"{source} is not a saved llmcli chat", "load a file written by /save")
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise bad
        if data.get("version") != FILE_VERSION:
            raise LlmcliError(f"{source}: chat file version {data.get('version')} is not supported")
        try:
            messages = [
                ChatMessage(str(m["role"]), str(m["content"]), bool(m.get("interrupted", False)))
                for m in data.get("messages", [])
            ]
            known = {f.name for f in fields(SamplingSettings)}
            values = {k: v for k, v in (data.get("settings") or {}).items() if k in known}
            if "stop" in values:
                values["stop"] = tuple(str(s) for s in values["stop"])
            settings = replace(SamplingSettings(), **values)
        except (KeyError, TypeError, AttributeError) as e:
            raise bad from e
        if any(m.role not in ("user", "assistant") for m in messages):
            raise bad
        settings.validate()
        system = data.get("system")
        if not all(_is_unicode(text) for text in [*(m.content for m in messages), str(system or "")]):
            # JSON can spell a lone surrogate ("\udcff"); no tokenizer takes one, and /save never writes one.
            raise LlmcliError(f"{source} holds text that is not valid Unicode (a lone surrogate)", "load a file written by /save")
        return cls(model=str(data.get("model") or ""), system=str(system) if system else None, settings=settings, messages=messages)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_setting(key: str, value: str):
    """A `/set` value as the type the setting has; `none`/`off` for the optional ones."""
    text = value.strip()
    if key in OPTIONAL and text.lower() in ("none", "off", "null", ""):
        return None
    kind = "an integer" if key in INTEGERS else "a number"
    try:
        return int(text) if key in INTEGERS else float(text)
    except ValueError:
        off = " or 'none'" if key in OPTIONAL else ""
        raise LlmcliError(f"{key} must be {kind}{off}, not '{text}'", "/set alone lists the settings and their values") from None
