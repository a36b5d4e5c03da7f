"""Pushing an exported model folder to a hub repo, through huggingface_hub only.

The repo is created if needed (private unless asked otherwise), then the folder goes up
in one commit. Large files travel by the hub's own protocol (Xet where `hf_xet` is
installed, else LFS); either way a file the hub already holds is not sent again, so a
push cut off midway (network, Ctrl-C) is resumed by running it again. The token is
whatever huggingface_hub finds (`HF_TOKEN`, or `hf auth login`'s stored one): hubtune
never asks for one, never writes one and never prints one. A refusal is one sentence:
no token (401), a token that may not write there (403), a repo that changed during the
push (409).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.hub.errors import HubError, HubUnavailable
from engine.hub.names import check_repo_id


@contextmanager
def _push_errors(repo: str) -> Iterator[None]:
    """huggingface_hub's and the network's failures while pushing, as one sentence."""
    from huggingface_hub import errors

    from engine.hub.client import hub_errors

    try:
        with hub_errors(repo):
            yield
    except HubUnavailable as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, errors.HfHubHTTPError) and _status(cause) != 429:
            raise _refusal(cause, repo) from None  # the hub answered: not a network failure
        if isinstance(cause, errors.HfHubHTTPError):
            raise  # rate limited: hub_errors' own sentence
        raise HubUnavailable(f"The hub cannot be reached to push {repo} (no network, or "
                             "HF_HUB_OFFLINE=1); run the push again once it can: files "
                             "already sent are not sent twice.") from None
    except errors.HfHubHTTPError as exc:  # in case hub_errors let one through
        raise _refusal(exc, repo) from None
    except HubError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, errors.HfHubHTTPError):
            raise _refusal(cause, repo) from None
        raise _refusal_from_text(str(exc), repo) or exc from None


def _status(exc) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _refusal(exc, repo: str) -> HubError:
    status = _status(exc)
    if status is not None:
        return _sentence(status, repo) or HubError(
            f"The hub answered HTTP {status} to the push of {repo}; run it again later "
            "(files already sent are not sent twice).")
    first = (str(exc).strip().splitlines() or ["no reason given"])[0]
    return HubError(f"The hub refused to push {repo}: {first[:200]}")


def _refusal_from_text(text: str, repo: str) -> HubError | None:
    import re

    text = text.replace(repo, "")  # a repo named `run-401` is not a refusal
    for status in (401, 403, 409):
        if re.search(rf"\b{status}\b", text):
            return _sentence(status, repo)
    return None


def _sentence(status: int | None, repo: str) -> HubError | None:
    owner = repo.split("/")[0]
    if status == 401:
        return HubError(f"The hub wants a token to push {repo}: log in with `hf auth login` "
                        "or set HF_TOKEN to a token with write access.")
    if status == 403:
        return HubError(f"The token cannot write to {repo}: it needs write access to "
                        f"{owner!r} (a fine-grained token names the repos it may write).")
    if status == 409:
        return HubError(f"{repo} changed on the hub while the push ran (or the name is "
                        "taken by another kind of repo); run the push again.")
    return None


def push_folder(folder: Path, repo: str, *, private: bool = True,
                endpoint: str | None = None,
                message: str = "Upload a hubtune fine-tune") -> str:
    """Upload `folder` to model repo `repo` (created if needed, private unless `private` is
    False); returns the commit's URL. The bytes sent show on huggingface_hub's own progress
    bars (stderr), unless HF_HUB_DISABLE_PROGRESS_BARS is set."""
    from huggingface_hub import HfApi

    repo = check_repo_id(repo, "Model")
    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        raise HubError(f"{folder} is not an exported model folder; export the run first "
                       "(hubtune export RUN_ID DIR).")
    api = HfApi(endpoint=endpoint)
    with _push_errors(repo), _progress_bars():
        api.create_repo(repo, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo, commit_message=message)
    return str(getattr(info, "commit_url", None) or f"{api.endpoint}/{repo}")


@contextmanager
def _progress_bars() -> Iterator[None]:
    """huggingface_hub's byte progress bars on for the push (loading a model turns them
    off for the whole process), unless the user turned them off."""
    import os

    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    wanted = not os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    was_off = are_progress_bars_disabled()
    if wanted and was_off:
        enable_progress_bars()
    try:
        yield
    finally:
        if wanted and was_off:
            disable_progress_bars()
