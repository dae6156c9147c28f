"""Export to SavedModel, TFLite (float32, float16, dynamic-range or full int8) and ONNX, checked.

Every export writes the file, then runs it in its own runtime (TensorFlow, ai-edge-litert,
onnxruntime) on sample inputs and reports how far it is from Keras:

>>> import keras_attn_zoo as zoo
>>> from keras_attn_zoo.export import export_model
>>> report = export_model(zoo.load("fa_resnet20"), "fa_resnet20.onnx", "onnx", outputs=["*_fa:1"])
>>> report.ok
True

Needs the TensorFlow backend and the ``export`` extra (``pip install 'keras_attn_zoo[export]'``);
TensorFlow is imported only when an export runs.
"""

from keras_attn_zoo.export.exporter import FORMATS, QUANTIZATIONS, ExportReport, export_model

__all__ = ["FORMATS", "QUANTIZATIONS", "ExportReport", "export_model"]
