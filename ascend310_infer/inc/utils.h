/**
 * Helpers shared by the DLRM batch-inference program and the converter (the batch-file layout is
 * src/inference/batch_files.py's).
 */
#ifndef DLRM_ASCEND310_INFER_INC_UTILS_H_
#define DLRM_ASCEND310_INFER_INC_UTILS_H_

#include <cstddef>
#include <map>
#include <string>
#include <vector>

// --name=value arguments into `flags`, whose keys are the known names (with their defaults); false
// (with a message) on an unknown or malformed argument or a missing `required` one.
bool ParseFlags(int argc, char **argv, const std::vector<std::string> &required,
                std::map<std::string, std::string> *flags);

// Names (without ".bin") of the regular *.bin files in `dir`, sorted; empty if none or no folder.
std::vector<std::string> ListBatches(const std::string &dir);

// Whole file into `out`; false (and a message on stderr naming the file) if it cannot be read.
bool ReadFile(const std::string &path, std::vector<char> *out);

// Writes `size` bytes to `path` through a temporary name and a rename; false on failure.
bool WriteFileAtomic(const std::string &path, const void *data, size_t size);

// mkdir -p; false (with a message) on failure.
bool MakeDirs(const std::string &dir);

// Milliseconds on a monotonic clock.
double NowMs();

#endif  // DLRM_ASCEND310_INFER_INC_UTILS_H_
