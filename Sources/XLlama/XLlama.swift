// The public face of the package: one import gives a program every layer.
@_exported import XLFormats
@_exported import XLGeneration
@_exported import XLModels
@_exported import XLTensors
@_exported import XLTokenizer
@_exported import XLTraining
@_exported import XLEval
