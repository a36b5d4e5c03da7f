"""Review of a run's validation examples: each stored per-example result joined with its
input, re-read from the run's data with the same rules training used, and two runs'
results side by side.

The store's rows arrive as plain objects (`example`, `predicted`, `label`, `confidence`,
`loss`); this module never imports the store. It needs torch only for a language
model's run (its texts are kept as the tokenizer counts them, and transformers brings
torch); an image run's inputs are re-checked with PIL only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from engine.core.config import RunConfig, is_hub_data, parse_hub_data
from engine.core.errors import DataError, HubtuneError

REVIEWED_TASKS = ("text-classification", "text-pair-classification",
                  "multi-label-classification", "regression", "image-classification",
                  "seq2seq", "token-classification", "question-answering", "masked-lm",
                  "causal-lm")
"""Tasks whose evaluations record per-example results (every task that trains)."""
PAIR_SEPARATOR = " ||| "
SEQUENCE_TASKS = ("text-classification", "text-pair-classification",
                  "multi-label-classification", "regression")


class Result(Protocol):
    example: int
    predicted: str
    label: str
    confidence: float | None
    loss: float


@dataclass(frozen=True)
class ExampleInput:
    """One validation example as the run read it."""

    text: str
    """The input: its text, 'text ||| pair', the source text, or an image path."""
    row: int | None
    """Its data row in the file it came from (1 = first row after any header); None for
    an image folder."""
    label: str
    """The true label as the per-example results write it; empty where nothing is
    checked (a language model's rows carry the tokens it was scored on)."""
    accepted: tuple[str, ...] = ()
    """Other labels a stored row may carry: each gold answer of a question."""
    cut: bool = False
    """Whether a stored label may be this one's first words only (a sentence's tags, where
    data.max_length cut the sentence)."""

    def matches(self, stored: str) -> bool:
        """Whether a stored row's label is this example's."""
        return (not self.label or stored == self.label or stored in self.accepted
                or (self.cut and self.label.startswith(stored + " ")))


@dataclass(frozen=True)
class ReviewedExample:
    example: int
    row: int | None
    input: str
    label: str
    predicted: str
    confidence: float | None
    loss: float

    @property
    def correct(self) -> bool:
        return self.predicted == self.label

    def to_json(self) -> dict:
        return {**self.__dict__, "correct": self.correct}


def check_reviewable(task: str) -> None:
    if task not in REVIEWED_TASKS:
        raise HubtuneError(f"Per-example review is not available for head.task {task} yet; "
                           f"it covers {', '.join(REVIEWED_TASKS)}.")


def as_trained(run_id: int, cfg: RunConfig, summary: dict | None
               ) -> tuple[RunConfig, str | None]:
    """The config to re-read a run's validation data with, and a note when what the run
    read cannot be verified; a DataError when its files' content changed since.

    Hub data is read at the commit the run recorded, not where its branch is now.
    Files are checked against the fingerprint training recorded (engine.data.fingerprint);
    a run from before fingerprints (or one that never finished) gets the count and label
    checks of `join_inputs` only, with a note saying so.
    """
    import dataclasses

    from engine.data.fingerprint import changed_files

    record = summary.get("dataset") if isinstance(summary, dict) else None
    if is_hub_data(cfg.data.train):
        sha = record.get("sha") if isinstance(record, dict) else None
        other = cfg.data.validation is not None and (
            parse_hub_data(cfg.data.validation, "data.validation").repo
            != parse_hub_data(cfg.data.train).repo)
        if not isinstance(sha, str) or not sha or other:
            return cfg, (f"Run {run_id} recorded no commit of its {'validation ' * other}hub "
                         f"data; it is read at {cfg.data.revision} as it is now, and matched "
                         "to the run's results by count and labels only.")
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, revision=sha)), None
    changed = changed_files(cfg, record)
    if changed is None:
        return cfg, (f"Run {run_id} recorded no fingerprint of its data files (it trained "
                     "before hubtune kept one, or did not finish); its examples are matched "
                     "to its results by count and labels only.")
    if changed:
        shown = ", ".join(changed)
        raise DataError(f"Run {run_id}'s data files changed since it trained ({shown} no "
                        "longer holds what it read), so its examples cannot be shown beside "
                        "their inputs; restore the file, or `hubtune runs fork "
                        f"{run_id}` to train on the data as it is.")
    return cfg, None


def validation_inputs(cfg: RunConfig) -> list[ExampleInput]:
    """Every validation example of a run in the order its evaluations saw them."""
    task = cfg.head.task
    check_reviewable(task)
    if is_hub_data(cfg.data.train):
        return _hub_inputs(cfg)
    if task == "image-classification":
        from engine.tasks.image import image_splits

        _, val, _ = image_splits(cfg, [])
        return [ExampleInput(str(p), None, str(label))
                for p, label in zip(val["path"], val["label"], strict=True)]
    if task == "seq2seq":
        from engine.tasks.seq2seq import seq2seq_columns, seq2seq_frames

        _, val, path = seq2seq_frames(cfg, [])
        source, target = seq2seq_columns(val, path, cfg)
        return [ExampleInput(str(s), int(i) + 1, str(t)) for i, s, t in
                zip(val.index, val[source], val[target], strict=True)]
    if task == "token-classification":
        return _tag_inputs(cfg)
    if task == "question-answering":
        return _question_inputs(cfg)
    if task in ("masked-lm", "causal-lm"):
        return _lm_inputs(cfg)
    return _text_inputs(cfg)


def _tag_inputs(cfg: RunConfig) -> list[ExampleInput]:
    """Sentences (words joined by spaces) and their tags, as TokenTask.load_data reads
    them: rows without words left out."""
    from engine.data.loading import as_list, load_frames, pick_column
    from engine.tasks.token import read_conll

    spec = cfg.data
    _, val, path = load_frames(cfg, lambda p, role: read_conll(p, spec.encoding, role))
    words_col = pick_column(val, path, spec.text_column, "text_column", ("tokens", "words"))
    tags_col = pick_column(val, path, spec.label_column, "label_column",
                           ("tags", "ner_tags", "labels"))
    out = []
    for n, (i, words, tags) in enumerate(zip(val.index, val[words_col], val[tags_col],
                                             strict=True)):
        words = [str(w) for w in as_list(words, path, words_col, n)]
        if words:
            tags = [str(t) for t in as_list(tags, path, tags_col, n)]
            out.append(ExampleInput(" ".join(words), int(i) + 1, " ".join(tags), cut=True))
    return out


def _question_inputs(cfg: RunConfig) -> list[ExampleInput]:
    """'question ||| context' per question, with its gold answers."""
    from engine.data.loading import load_frames
    from engine.tasks.qa import read_squad

    spec = cfg.data
    _, val, _ = load_frames(cfg, lambda p, role: read_squad(p, spec.encoding, role))
    out = []
    for i, q, c, answers in zip(val.index, val["question"], val["context"], val["answers"],
                                strict=True):
        golds = tuple(t for t, _ in answers)
        out.append(ExampleInput(str(q).lstrip() + PAIR_SEPARATOR + str(c), int(i) + 1,
                                golds[0] if golds else "", golds))
    return out


def _lm_inputs(cfg: RunConfig) -> list[ExampleInput]:
    """The texts a language model was validated on: non-empty, and more than one token
    long with the run's tokenizer (as LanguageModelTask.load_data keeps them)."""
    from engine.data.loading import load_frames, pick_column
    from engine.data.text_cells import cut_texts
    from engine.modeling.loading import load_tokenizer

    spec = cfg.data
    _, val, path = load_frames(cfg)
    column = pick_column(val, path, spec.text_column, "text_column", ("content", "sentence"))
    kept = [(i, t) for i, t in zip(val.index, val[column], strict=True)
            if isinstance(t, str) and t.strip()]
    tokenizer, _ = load_tokenizer(cfg.model)
    ids = tokenizer(cut_texts([t for _, t in kept], spec.max_length), truncation=True,
                    max_length=spec.max_length, return_attention_mask=False
                    )["input_ids"] if kept else []
    return [ExampleInput(t, int(i) + 1, "") for (i, t), x in zip(kept, ids, strict=True)
            if len(x) > 1]


def _hub_inputs(cfg: RunConfig) -> list[ExampleInput]:
    """A sequence head's validation rows of an `hf:` dataset, read as its run read them
    (from the cache: nothing is downloaded again)."""
    from engine.data.hub.splits import encode_labels
    from engine.data.hub.text import _as_text, hub_text_splits
    from engine.tasks.hub_data import hub_splits

    if cfg.head.task not in SEQUENCE_TASKS:
        raise HubtuneError(f"Per-example review of a head.task {cfg.head.task} run trained on "
                           "hub data (hf:) is not available yet; it covers the sequence heads "
                           "(classification, pairs, multi-label, regression) on hub data, and "
                           "every head on files.")
    splits = hub_splits(cfg)
    rows = hub_text_splits(cfg, splits.train, splits.validation)
    text, pair, label = rows.columns
    val = rows.validation
    texts = [_as_text(v) for v in val[text]]
    if pair is not None:
        texts = [t + PAIR_SEPARATOR + _as_text(p) for t, p in zip(texts, val[pair], strict=True)]
    targets = encode_labels(list(val[label]), rows.lmap, rows.val_where, label)
    shown = _label_texts(cfg.head.task, targets, rows.lmap.names)
    return [ExampleInput(t, None, label) for t, label in zip(texts, shown, strict=True)]


def _text_inputs(cfg: RunConfig) -> list[ExampleInput]:
    from engine.data.loading import _labelled_splits, _text

    spec = cfg.data
    _, (frame, labels), names, _ = _labelled_splits(cfg, [])
    texts = [_text(v) for v in frame[spec.text_column]]
    if spec.text_pair_column:
        texts = [t + PAIR_SEPARATOR + _text(p)
                 for t, p in zip(texts, frame[spec.text_pair_column], strict=True)]
    shown = _label_texts(cfg.head.task, labels, names)
    return [ExampleInput(t, int(i) + 1, label)
            for i, t, label in zip(frame.index, texts, shown, strict=True)]


def _label_texts(task: str, targets: list, names: tuple[str, ...]) -> list[str]:
    """Sequence-head targets (class indices, multi-hot rows or numbers) as the per-example
    results write their labels."""
    if task == "regression":
        return [f"{float(v):.6g}" for v in targets]
    if task == "multi-label-classification":
        return [", ".join(n for n, on in zip(names, hot, strict=True) if on) or "(none)"
                for hot in targets]
    return [names[i] for i in targets]


def join_inputs(run_id: int, results: Iterable[Result], inputs: list[ExampleInput],
                examples: int) -> list[ReviewedExample]:
    """`results` with their inputs; refused when the data no longer matches the run's."""
    if len(inputs) != examples:
        raise DataError(f"The validation data of run {run_id} now has {len(inputs)} examples, "
                        f"not the {examples} it was evaluated on; its data files changed since, "
                        "so the examples cannot be matched to their inputs.")
    out = []
    for r in results:
        given = inputs[r.example] if 0 <= r.example < len(inputs) else None
        if given is None or not given.matches(r.label):
            now = "is gone" if given is None else f"is now labelled {given.label!r}"
            raise DataError(f"Validation example {r.example} of run {run_id} {now}, not "
                            f"{r.label!r} as when it trained; its data files changed since, "
                            "so the examples cannot be matched to their inputs.")
        out.append(ReviewedExample(r.example, given.row, given.text, r.label, r.predicted,
                                   r.confidence, r.loss))
    return out


@dataclass(frozen=True)
class Disagreement:
    """A validation example two runs predict differently."""

    example: int
    row: int | None
    input: str
    label: str
    predicted: tuple[str, str]
    confidence: tuple[float | None, float | None]
    hits: tuple[bool, bool] | None = None
    """Whether each run is right by its own row (a question's label is the gold answer
    nearest each run's answer); None: each prediction against `label`."""

    @property
    def right(self) -> str:
        """Which run is right: 'first', 'second' or 'neither'."""
        hits = self.hits or tuple(p == self.label for p in self.predicted)
        return "first" if hits[0] else "second" if hits[1] else "neither"

    def to_json(self, ids: tuple[int, int]) -> dict:
        return {"example": self.example, "row": self.row, "input": self.input,
                "label": self.label,
                "predicted": {str(i): p for i, p in zip(ids, self.predicted, strict=True)},
                "confidence": {str(i): c for i, c in zip(ids, self.confidence, strict=True)},
                "right": {"first": ids[0], "second": ids[1]}.get(self.right)}


def same_validation(cfg_a: RunConfig, cfg_b: RunConfig, ids: tuple[int, int]
                    ) -> list[ExampleInput]:
    """The validation inputs two runs share; refused unless they are the same examples in
    the same order with the same labels."""
    if cfg_a.head.task != cfg_b.head.task:
        raise HubtuneError(f"Runs {ids[0]} and {ids[1]} train different heads "
                           f"({cfg_a.head.task}, {cfg_b.head.task}); compare examples of runs "
                           "on the same task and data.")
    a, b = validation_inputs(cfg_a), validation_inputs(cfg_b)
    if [(x.text, x.label) for x in a] != [(x.text, x.label) for x in b]:
        raise HubtuneError(f"Runs {ids[0]} and {ids[1]} were validated on different data "
                           f"({len(a)} and {len(b)} examples, not the same rows); compare "
                           "examples only between runs with the same data and split seed.")
    return a


def disagreements(first: Mapping[int, Result], second: Mapping[int, Result],
                  inputs: list[ExampleInput]) -> list[Disagreement]:
    """Examples both runs recorded and predict differently: where exactly one is right
    first, then by example index."""
    out = []
    for index in sorted(first.keys() & second.keys()):
        a, b = first[index], second[index]
        if a.predicted == b.predicted or index >= len(inputs):
            continue
        given = inputs[index]
        out.append(Disagreement(index, given.row, given.text, a.label,
                                (a.predicted, b.predicted), (a.confidence, b.confidence),
                                (a.predicted == a.label, b.predicted == b.label)))
    return sorted(out, key=lambda d: (d.right == "neither", d.example))
