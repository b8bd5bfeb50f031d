//! Random map/unmap/protect/translate sequences against the model and a plain map of intentions.
