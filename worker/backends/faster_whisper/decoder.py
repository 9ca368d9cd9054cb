"""Whisper's own seek loop, run for several stretches of one recording at once, batched.

A long recording is cut into sections (worker.audio.pieces.sections): stretches of at most
2 minutes, cut at quiet moments, with long silences left out. Each section is decoded the
way faster-whisper decodes a file: 30 s windows from a seek position, each prompted with
the section's tokens so far, timestamp tokens included (a prompt of plain text makes the
model answer without timestamps, a 30-second segment a window, and lose whatever it stops
early on: the bug that lost whole paragraphs). A section first reads the 15 s before it,
for its prompt only, so a cut costs no context. Up to `batch_size` sections advance
together: their current windows go to the model's shared passes (`passes`), which encode
and decode them in as few calls as the compute lanes allow, beside the windows of other
requests and live sessions. A window costs less so than one at a time on a CPU, and far
less on a GPU (`python -m bench --long` measures it).

Two things differ from faster-whisper's loop, on purpose, to lose no words:

- When the model ends a window with a single timestamp, Whisper takes it to mean "no speech
  after this" and skips the rest of the window; tiny models say so on speech too. Here the
  rest of the window is asked the speech detector first: if it holds speech, the next
  window starts there.
- A window read as empty (or as no speech) that the speech detector says holds speech is
  read again without the prompt: a prompt can lead the model astray. Unprompted, the
  likeliest reading with words among the temperature fallback's is kept instead of the
  silence (Whisper now and then skipped the first window of a repetitive clip so).

Segments come out in the recording's order, as soon as every earlier section is done.
Beside it, one job each: `passes` (the compute lanes, and which windows share a call),
`generate` (the temperature fallback and the CTranslate2 call),
`seek_stream` (one section's state in the loop), `options`, and `wire` (the segments as
the wire protocol's).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.audio import pieces
from worker.audio.pieces import Section, SpeechDetector
from worker.audio.resample import SAMPLE_RATE
from worker.backends.faster_whisper import passes
from worker.backends.faster_whisper.features import log_mel
from worker.backends.faster_whisper.generate import Decoded
from worker.backends.faster_whisper.options import Options
from worker.backends.faster_whisper.seek_stream import SeekStream
from worker.engine.batcher import FILE

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

#: Samples per feature frame, and feature frames in one of Whisper's 30 s windows.
HOP = 160
WINDOW_FRAMES = 3000
#: The rest of a window shorter than this is not looked at again after an early end.
MIN_REST_SECONDS = 1.0
#: Speech in the rest of a window, at least this long, means the window ended too early.
MIN_MISSED_SPEECH_SECONDS = 0.3
#: A window read as empty is read again, unprompted, when it holds this much speech.
MIN_SPEECH_SECONDS = 1.0
#: A window restarted at missed speech starts this much before it.
RESTART_LEAD_SECONDS = 0.2


class BatchDecoder:
    """Decodes sections with one model, up to `batch_size` of them at once."""

    def __init__(
        self,
        model: WhisperModel,
        tokenizer: Tokenizer,
        options: Options,
        batch_size: int,
        shared: passes.SharedPasses,
        speech: SpeechDetector | None = None,
        window_frames: int = WINDOW_FRAMES,
        urgency: int = FILE,
    ) -> None:
        """`model` is read for what needs no compute (features, prompts, token splits); the
        encoder and decoder run in `shared`'s passes, `urgency` says how soon."""
        self._model = model
        self._passes = shared
        self._urgency = urgency
        self._tokenizer = tokenizer
        self._options = options
        self._batch_size = max(1, batch_size)
        self._speech = speech
        self._seconds_per_frame = HOP / SAMPLE_RATE
        #: The encoder's window: Whisper's 30 s, or shorter for live decodes, which are cheaper
        #: so (worker.engine.live.jobs.live_window).
        self._window = min(WINDOW_FRAMES, window_frames)

    def run(self, sections: Iterable[Section]) -> Iterator[dict[str, Any]]:
        """The segments of every section, in order, each as soon as all earlier ones are known.

        A segment is a dict with faster-whisper's keys (start/end on the recording's clock,
        tokens, text, seek, temperature, avg_logprob, compression_ratio, no_speech_prob,
        words). Sections are read from `sections` only as batch places free up, so a
        streamed recording is never held whole.
        """
        return self._run(self._start(section) for section in sections)

    def continuation(
        self, samples: np.ndarray, heard: list[tuple[float, float, str]], skip: float, prefix: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """The segments of `samples` after its first `skip` seconds, whose text is `heard`
        ((start, end, text), times in `samples`): a live utterance read together with what
        was said before it.

        The model reads the new speech as it would in the middle of a file, one window holding
        the sentences before it too: the earlier audio goes in with the new, its text (with
        its timestamps) as the prompt, and the timestamp where the new audio starts is forced
        as the first thing the model writes. Live finals read so are far more accurate than
        each utterance read alone with the text before as a plain prompt, and as accurate as
        the same speech decoded whole, as a file (`python -m bench --live` measures it).
        Forcing the earlier text as the start of the model's answer instead reads as well but
        costs a decoder step a token, where a prompt is read in one step. Without the forced
        timestamp the model often ended its answer where the earlier text did, and the new
        utterance was lost. Should the window still come back empty, the new audio is read
        again on its own.

        With `prefix`, what the model writes for the new audio begins with those words (a live
        final keeps the words its partials committed). Forced words cost a decoder step each.
        """
        stream = self._stream(0, samples, None)
        stream.skip = min(stream.frames, round(skip / self._seconds_per_frame))
        timestamp = self._tokenizer.timestamp_begin
        precision = self._model.time_precision
        ends = [skip]
        for start, end, text in heard:
            if text.strip():
                stream.heard += [timestamp + round(start / precision)]
                stream.heard += self._tokenizer.encode(" " + text.strip())
                stream.heard += [timestamp + round(end / precision)]
                ends.append(end)
        if stream.heard:
            stream.tokens += stream.heard
        if stream.heard or prefix:
            stream.forced = [timestamp + round(max(ends) / precision)]
            stream.forced += self._tokenizer.encode(" " + prefix.strip()) if prefix else []
        else:
            stream.seek = stream.skip
        return self._run(iter([stream]))

    def _run(self, streams: Iterator[SeekStream]) -> Iterator[dict[str, Any]]:
        source = streams
        active: list[SeekStream] = []
        order: deque[SeekStream] = deque()  # started, not yet fully given out, in the recording's order
        given = 0  # segments of order[0] already yielded
        exhausted = False
        while True:
            while not exhausted and len(active) < self._batch_size:
                stream = next(source, None)
                if stream is None:
                    exhausted = True
                    break
                order.append(stream)
                if not stream.done:
                    active.append(stream)
            while order:
                head = order[0]
                while given < len(head.segments):
                    yield head.segments[given]
                    given += 1
                if not head.done:
                    break
                order.popleft()
                given = 0
            if not active:
                if exhausted:
                    return
                continue
            self._step(active)
            for stream in active:
                if stream.done:
                    stream.release()
            active = [s for s in active if not s.done]

    def _start(self, section: Section) -> SeekStream:
        usable = (
            section.context.size >= HOP
            and bool((pieces.loudness(section.context) >= pieces.LOUD_DBFS).any())  # silence says nothing
        )
        context = section.context[-(section.context.size // HOP) * HOP :] if usable else None
        return self._stream(section.start, section.samples, context)

    def _stream(self, start: int, samples: np.ndarray, context: np.ndarray | None) -> SeekStream:
        audio = samples if context is None else np.concatenate([context, samples])
        features = log_mel(self._model.feature_extractor, audio)
        boundary = 0 if context is None else context.size // HOP
        return SeekStream(
            start, audio, features, features.shape[-1] - 1, boundary, tokens=list(self._options.initial_tokens)
        )

    def _step(self, streams: list[SeekStream]) -> None:
        """One window for each stream: decoded in the model's shared passes, then each moved on.

        CTranslate2 batches prompts of one length only: the streams with earlier text are
        given the same number of its last tokens (the fewest any of them has), streams with
        none go in a group of their own, and a stream with a forced start in one of its own.
        The groups are handed to the passes together, so they may run side by side.
        """
        previous = [s.tokens[s.reset_since :] for s in streams]
        groups: dict[object, list[int]] = {}
        for i, p in enumerate(previous):
            groups.setdefault(i if streams[i].forced else bool(p), []).append(i)  # a forced start: alone
        planned = []
        for members in groups.values():
            shortest = min(len(previous[i]) for i in members)
            group = [streams[i] for i in members]
            planned.append(
                (group, *self._windows(group, [previous[i][-shortest:] if shortest else [] for i in members]))
            )
        outcomes = iter(self._passes.decode([w for _group, _sizes, _batch, windows in planned for w in windows]))
        for group, sizes, batch, windows in planned:
            self._finish(group, sizes, batch, [next(outcomes) for _ in windows])

    def _windows(
        self, streams: list[SeekStream], previous: list[list[int]]
    ) -> tuple[list[int], np.ndarray, list[passes.Window]]:
        """Each stream's next window (its length in frames, the features padded to the
        window), and what the passes decode for it."""
        from faster_whisper.audio import pad_or_trim

        window = self._window
        sizes = [min(window, (s.boundary if s.seek < s.boundary else s.frames) - s.seek) for s in streams]
        batch = np.stack(
            [pad_or_trim(s.features[:, s.seek : s.seek + n], window) for s, n in zip(streams, sizes, strict=True)]
        )
        windows = [
            passes.Window(
                features=batch[i],
                prompt=self._model.get_prompt(self._tokenizer, p, hotwords=self._options.hotwords) + s.forced,
                options=self._options,
                tokenizer=self._tokenizer,
                urgency=self._urgency,
                keep_encoded=self._options.word_timestamps,
            )
            for i, (s, p) in enumerate(zip(streams, previous, strict=True))
        ]
        return sizes, batch, windows

    def _finish(
        self, streams: list[SeekStream], sizes: list[int], batch: np.ndarray, outcomes: list[passes.Outcome]
    ) -> None:
        """Move each stream on by what its window read, words aligned where asked."""
        decoded = [o.decoded for o in outcomes]
        heard = [s.heard if s.forced else [] for s in streams]
        found: list[list[dict[str, Any]]] = []
        seeks = [s.seek for s in streams]
        for i, (stream, size) in enumerate(zip(streams, sizes, strict=True)):
            segments, decoded[i] = self._advance(stream, size, decoded[i])
            found.append(segments)
        if self._options.word_timestamps and any(found):
            # faster-whisper aligns a batch only where every window has a segment: the windows
            # without (a context window, silence) are left out.
            spoken = [i for i, segments in enumerate(found) if segments]
            # The text heard before is aligned too (its words are not kept): the new words then
            # start where the new audio does, not at the window's start.
            spf = self._seconds_per_frame
            before = [
                [{"tokens": heard[i], "seek": seeks[i], "start": seeks[i] * spf, "end": streams[i].skip * spf}]
                if heard[i]
                else []
                for i in spoken
            ]
            kept = [outcomes[i].encoded for i in spoken]
            self._add_words(
                [sizes[i] for i in spoken],
                [before[n] + found[i] for n, i in enumerate(spoken)],
                None if any(e is None for e in kept) else np.stack(kept),  # type: ignore[arg-type]
                batch[spoken],
            )
        for stream, result, segments in zip(streams, decoded, found, strict=True):
            self._keep(stream, result, segments)

    def _advance(self, stream: SeekStream, size: int, result: Decoded) -> tuple[list[dict[str, Any]], Decoded]:
        """The window's segments (times on the section's clock) and the decode they came from;
        moves the stream's seek on."""
        options = self._options
        start = stream.seek
        offset = start * self._seconds_per_frame
        silent = result.no_speech_prob > options.no_speech_threshold and result.avg_logprob < options.log_prob_threshold
        if stream.forced:
            stream.forced = []  # the first window only
            if silent or not _has_text(self._tokenizer, result.tokens):
                stream.seek = stream.skip  # nothing after what was heard: the new audio again, on its own
                return [], result
        if start >= stream.boundary and (silent or not _has_text(self._tokenizer, result.tokens)):
            spoken = [d for d in result.tried if _has_text(self._tokenizer, d.tokens)]
            if (stream.tokens[stream.reset_since :] or spoken) and self._holds_speech(stream, start, start + size):
                if stream.tokens[stream.reset_since :]:
                    # Nothing read where the speech detector hears speech: a prompt can lead the
                    # model astray like that (a hallucinated one above all). Read it again without.
                    stream.reset_since = len(stream.tokens)
                    return [], result
                # Unprompted, every temperature failed a check and the pick looked like silence
                # (Whisper would skip 30 s of speech): the likeliest reading with words instead.
                result = max(spoken, key=lambda d: d.avg_logprob)
            else:
                stream.seek = start + size
                return [], result
        segments, seek, _single_ending = self._model._split_segments_by_timestamps(
            tokenizer=self._tokenizer,
            tokens=result.tokens,
            time_offset=offset,
            segment_size=size,
            segment_duration=size * self._seconds_per_frame,
            seek=start,
        )
        if start < stream.boundary:  # the context window: its text is the prompt, nothing more
            stream.tokens.extend(
                t for s in segments if self._tokenizer.decode(s["tokens"]).strip() for t in s["tokens"]
            )
            stream.seek = stream.boundary
            return [], result
        if start < stream.skip:  # a forced start: what the model wrote begins with the new audio
            new = stream.skip * self._seconds_per_frame
            for s in segments:
                s["start"] = max(s["start"], new)
                s["end"] = max(s["end"], s["start"])
        segments = [s for s in segments if s["start"] != s["end"]]
        stream.seek = self._not_past_speech(stream, start, int(seek), size, segments)
        return segments, result

    def _not_past_speech(
        self, stream: SeekStream, start: int, seek: int, size: int, segments: list[dict[str, Any]]
    ) -> int:
        """`seek`, or an earlier frame when the window was left early with speech still in it."""
        if not segments or self._speech is None:
            return seek
        ended = round(float(max(s["end"] for s in segments)) / self._seconds_per_frame)
        if not start < ended < seek or (seek - ended) * self._seconds_per_frame < MIN_REST_SECONDS:
            return seek
        rest = stream.audio[ended * HOP : seek * HOP]
        spans = [(a, b) for a, b in self._speech(rest) if b - a >= MIN_MISSED_SPEECH_SECONDS * SAMPLE_RATE]
        if not spans:
            return seek
        restart = ended + max(0, round((spans[0][0] / SAMPLE_RATE - RESTART_LEAD_SECONDS) / self._seconds_per_frame))
        return min(restart, seek)

    def _holds_speech(self, stream: SeekStream, start: int, end: int) -> bool:
        """Whether frames [start, end) of the stream hold MIN_SPEECH_SECONDS of speech."""
        if self._speech is None:
            return False
        spans = self._speech(stream.audio[start * HOP : end * HOP])
        return sum(b - a for a, b in spans) >= MIN_SPEECH_SECONDS * SAMPLE_RATE

    def _add_words(
        self, sizes: list[int], found: list[list[dict[str, Any]]], encoded: np.ndarray | None, batch: np.ndarray
    ) -> None:
        """Word timestamps for the windows' segments: aligned on the encoder output the pass
        kept, or on the windows encoded again where it could not keep it (CUDA)."""
        import ctranslate2

        for segments in found:
            for s in segments:
                s.setdefault("words", [])

        def align(model: WhisperModel) -> None:
            features = model.encode(batch) if encoded is None else ctranslate2.StorageView.from_array(encoded)
            model.add_word_timestamps(
                found,
                self._tokenizer,
                features,
                sizes,
                self._options.prepend_punctuations,
                self._options.append_punctuations,
                last_speech_timestamp=0.0,
            )

        self._passes.solo(align, self._urgency)

    def _keep(self, stream: SeekStream, result: Decoded, segments: list[dict[str, Any]]) -> None:
        offset = (stream.start / SAMPLE_RATE) - stream.boundary * self._seconds_per_frame
        for s in segments:
            text = self._tokenizer.decode(s["tokens"])
            if not text.strip():
                continue
            stream.tokens.extend(s["tokens"])
            stream.segments.append(
                {
                    "start": s["start"] + offset,
                    "end": s["end"] + offset,
                    "text": text,
                    "tokens": s["tokens"],
                    "seek": s["seek"] - stream.boundary + stream.start // HOP,
                    "temperature": result.temperature,
                    "avg_logprob": result.avg_logprob,
                    "compression_ratio": result.compression_ratio,
                    "no_speech_prob": result.no_speech_prob,
                    "words": None
                    if not self._options.word_timestamps
                    else [{**w, "start": w["start"] + offset, "end": w["end"] + offset} for w in s.get("words", [])],
                }
            )
        if result.temperature > self._options.prompt_reset_on_temperature:
            stream.reset_since = len(stream.tokens)


def _has_text(tokenizer: Tokenizer, tokens: list[int]) -> bool:
    return bool(tokenizer.decode([t for t in tokens if t < tokenizer.eot]).strip())
