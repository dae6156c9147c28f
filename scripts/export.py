"""Export a model to SavedModel, TFLite or ONNX and check the file against Keras.

    python scripts/export.py fa_resnet20 --format tflite --quantize int8 \\
        --representative-images my_images/ -o fa_resnet20_int8.tflite

The same as ``keras-attn-zoo export`` (``--help`` lists the options); the work is done by
``keras_attn_zoo.export.export_model``.
"""

import sys

from keras_attn_zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
