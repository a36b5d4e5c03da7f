"""Reading training data: one reader for every file format (`reader`, shared by the
preview, the form and training) and the text examples, splits and collators built on
it (`loading`). Depends on `engine.core` alone; knows nothing of models or tasks.
"""
