"""Train a style-transfer network: python train.py -c conf/wave.yml (see --help)."""
import sys

from keras_style.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
