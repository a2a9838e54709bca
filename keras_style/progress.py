"""A progress bar for long work: step, named values and ETA.

On a terminal it redraws one line; in a log file it writes a line every `log_seconds`, so logs of
long trainings stay readable.
"""
import sys
import time


def _format_seconds(seconds):
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _format_value(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    def __init__(self, total, label="step", start=0, stream=None, log_seconds=30.0, width=24,
                 enabled=True):
        self.total, self.label, self.start = total, label, start
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log_seconds, self.width = log_seconds, width
        self.began = time.perf_counter()
        self.last_log = -float("inf")
        self.current = start
        self.ended = False

    def rate(self):
        """Steps per second since this bar started."""
        elapsed = time.perf_counter() - self.began
        return (self.current - self.start) / elapsed if elapsed > 0 else 0.0

    def update(self, current, values=None):
        self.current = current
        if not self.enabled:
            return
        now = time.perf_counter()
        done = current >= self.total
        if not self.interactive and not done and now - self.last_log < self.log_seconds:
            return
        self.last_log = now
        line = self._line(current, values or {})
        if self.interactive:
            self.stream.write("\r" + line + ("\n" if done else ""))
            self.ended = done
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _line(self, current, values):
        fraction = min(1.0, current / self.total) if self.total else 1.0
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        rate = self.rate()
        eta = (self.total - current) / rate if rate > 0 else 0.0
        parts = " ".join(f"{k} {_format_value(v)}" for k, v in values.items())
        timing = f"ETA {_format_seconds(eta)}" if current < self.total else \
            f"took {_format_seconds(time.perf_counter() - self.began)}"
        return f"{self.label} {current}/{self.total} [{bar}] {parts} | {timing}"

    def close(self):
        if self.enabled and self.interactive and not self.ended:
            self.stream.write("\n")
            self.stream.flush()
