"""``python -m asr_distill`` (and ``torchrun -m asr_distill``) entry point."""

from asr_distill.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
