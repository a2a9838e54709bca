"""Stylise photos: python eval.py --model_file pretrained/wave.keras --image_file photo.jpg (see --help)."""
import sys

from keras_style.cli import eval_main

if __name__ == "__main__":
    sys.exit(eval_main())
