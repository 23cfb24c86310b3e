"""CPU-only fused kernels (MindSpore Custom ops, func_type="aot"), built from the C++ sources beside this file at
first use and cached (kernels.py). GPU/Ascend and every export keep the stock ops."""
