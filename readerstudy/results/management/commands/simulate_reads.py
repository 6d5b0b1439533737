"""Fill a launched study with simulated reads (Roe-Metz-like readers), through the reading actions."""

from datetime import timedelta
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from inference.actions import shown_prediction
from readerstudy.core.errors import ActionError
from readerstudy.reading import actions
from readerstudy.reading.models import ReadingSession
from readerstudy.results.simulate import SimulatedCase, parse_effects, simulate_ratings
from readerstudy.studies.models import Study


class Command(BaseCommand):
    help = "Simulate every reader's reads of a launched study (demo data for the statistician pages)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("study", help="study name")
        parser.add_argument(
            "--aided-effect",
            default="<=10:0.15,10-30:0.6,>30:0.4",
            help="shift of positives' latent score with DL, per size stratum",
        )
        parser.add_argument(
            "--dl-reliance",
            type=float,
            default=0.4,
            help="weight aided readers give the DL probability they are shown (0-1; 0: ignored)",
        )
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--no-progress", action="store_true")

    def handle(
        self, *args: Any, study: str, aided_effect: str, dl_reliance: float, seed: int, no_progress: bool, **opts: Any
    ) -> None:
        target = Study.objects.filter(name=study).first()
        if target is None:
            raise CommandError(f"no study named {study!r}")
        if target.status != Study.Status.LAUNCHED:
            raise CommandError(f"study {study!r} is {target.status}; only a launched study can be read")
        try:
            effects = parse_effects(aided_effect)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        sessions = list(
            # The design's sessions only: the optional practice session is left unread.
            ReadingSession.objects.filter(study=target, practice=False)
            .select_related("reader")
            .order_by("reader", "index")
        )
        readers = sorted({s.reader_id for s in sessions})
        analysed = list(target.cases.analysed().select_related("truth", "study").order_by("case_id"))
        cases = [SimulatedCase(c.pk, int(c.truth.positive), c.size_stratum) for c in analysed]
        # What an aided reader of each case is shown (frozen at launch), as the reading API serves it.
        shown = {c.pk: shown_prediction(c) for c in analysed}
        dl_probability = {pk: p.probability for pk, p in shown.items() if p is not None}
        modalities = [(m.pk, m.shows_dl) for m in target.modalities.order_by("order")]
        try:  # simulate_ratings checks the reliance's bounds before anything is stored
            cells = simulate_ratings(
                np.random.default_rng(seed),
                readers,
                cases,
                modalities,
                aided_effect=effects,
                dl_probability=dl_probability,
                dl_reliance=dl_reliance,
            )
        except ValueError as exc:
            raise CommandError(f"--dl-reliance: {exc}") from None
        n_items = sum(s.items.count() for s in sessions)
        done = 0
        with tqdm(total=n_items, desc="simulated reads", unit="read", disable=no_progress) as bar:
            for session in sessions:
                session.refresh_from_db()
                if session.available_from is None:
                    raise CommandError(f"{session} has not opened; the previous session is unfinished")
                # Each reader works through the session from the moment it opened, read after read.
                now = max(session.available_from, session.started_at or session.available_from)
                try:
                    actions.start_session(session.reader, session, now=now)
                    for item in session.items.filter(read__isnull=True).order_by("position"):
                        rating, seconds = cells[(session.reader_id, item.case_id, item.modality_id)]
                        now += timedelta(seconds=seconds + 3)
                        actions.submit_read(
                            session.reader,
                            item,
                            rating=rating,
                            active_seconds=seconds,
                            idempotency_key=f"sim-{item.pk}",
                            viewer_state={"simulated": True},
                            now=now,
                        )
                        done += 1
                        bar.update(1)
                except ActionError as exc:
                    raise CommandError(f"{session}: {exc}") from None
        self.stdout.write(self.style.SUCCESS(f"{done} simulated reads stored in {target.name!r}"))
