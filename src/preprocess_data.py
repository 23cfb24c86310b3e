"""The model-zoo command `python src/preprocess_data.py --data_path=DIR ...`: Criteo text -> packed
MindRecord. The work is src/data/preprocess.py's."""
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.data.preprocess import main  # noqa: E402

if __name__ == "__main__":
    main()
