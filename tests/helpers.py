"""Test helpers."""

from stable_baselines3.common.logger import configure


class RecordingLogger:
    """Collects what the algorithm records into SB3's logger, per dump."""

    def __init__(self, model):
        self.records: list[dict] = []
        logger = configure(None, [])
        original_record = logger.record
        current: dict = {}

        def record(key, value, exclude=None):
            current[key] = value
            original_record(key, value, exclude)

        def dump(step=0):
            self.records.append(dict(current))
            current.clear()

        logger.record = record
        logger.dump = dump
        model.set_logger(logger)
        self._current = current

    def train_records(self) -> list[dict]:
        return [r for r in [*self.records, self._current] if "train/approx_kl" in r]
