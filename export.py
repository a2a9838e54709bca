"""Export a model for serving or phones: python export.py --model_file pretrained/wave.keras (see --help)."""
import sys

from keras_style.cli import export_main

if __name__ == "__main__":
    sys.exit(export_main())
