/**
 * Converts an ONNX model exported by export.py into the model file that MindSpore Lite's runtime builds
 * from (Lite's MindIR), with the converter library of the same Lite package.
 *
 *   converter --onnx_path=dlrm.onnx --output_path=dlrm_lite.mindir [--weight_fp16=0|1] [--device=CPU|Ascend]
 *
 * The output appears only when the conversion succeeded: the converter writes a temporary file beside
 * it, which is renamed into place. Errors name the file and the reason; the exit code is 1 (2 for bad
 * arguments). --device=Ascend asks the converter for the Ascend-targeted model (not run on this project's
 * machines: they have no Ascend device).
 */
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "inc/lite_converter.h"
#include "inc/utils.h"

namespace {

std::vector<char> Chars(const std::string &s) { return std::vector<char>(s.begin(), s.end()); }

bool IsReadableFile(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), R_OK) == 0;
}

}  // namespace

int main(int argc, char **argv) {
  std::map<std::string, std::string> flags = {
      {"onnx_path", ""}, {"output_path", ""}, {"weight_fp16", "0"}, {"device", "CPU"}};
  if (!ParseFlags(argc, argv, {"onnx_path", "output_path"}, &flags)) return 2;
  const std::string onnx = flags["onnx_path"], out = flags["output_path"];
  const std::string suffix = ".mindir";
  if (out.size() <= suffix.size() || out.compare(out.size() - suffix.size(), suffix.size(), suffix) != 0) {
    std::cerr << "--output_path='" << out << "' must end with .mindir (the converter appends it)" << std::endl;
    return 2;
  }
  if (flags["weight_fp16"] != "0" && flags["weight_fp16"] != "1") {
    std::cerr << "--weight_fp16 must be 0 or 1, got '" << flags["weight_fp16"] << "'" << std::endl;
    return 2;
  }
  if (flags["device"] != "CPU" && flags["device"] != "Ascend") {
    std::cerr << "--device must be CPU or Ascend, got '" << flags["device"] << "'" << std::endl;
    return 2;
  }
  if (!IsReadableFile(onnx)) {
    std::cerr << "cannot convert '" << onnx << "': not a readable file (expected the .onnx written by "
              << "export.py --file_format=ONNX)" << std::endl;
    return 1;
  }
  const std::string prefix = out.substr(0, out.size() - suffix.size()) + ".tmp-" + std::to_string(getpid());
  mindspore::Status status;
  try {  // the library may throw on a model it cannot parse
    mindspore::Converter converter(mindspore::converter::kFmkTypeOnnx, Chars(onnx), Chars(prefix), Chars(""));
    converter.SetSaveType(mindspore::kMindIR);
    converter.SetWeightFp16(flags["weight_fp16"] == "1");
    if (flags["device"] == "Ascend") converter.SetDevice(Chars("Ascend"));
    status = converter.Convert();
  } catch (const std::exception &e) {
    std::remove((prefix + suffix).c_str());
    std::cerr << "cannot convert '" << onnx << "': " << e.what() << std::endl;
    return 1;
  }
  if (status != mindspore::kSuccess) {
    std::remove((prefix + suffix).c_str());
    std::cerr << "cannot convert '" << onnx << "': " << status.ToString() << std::endl;
    return 1;
  }
  if (std::rename((prefix + suffix).c_str(), out.c_str()) != 0) {
    std::perror(("cannot move the converted model to '" + out + "'").c_str());
    std::remove((prefix + suffix).c_str());
    return 1;
  }
  std::cout << "converted " << onnx << " -> " << out << std::endl;
  return 0;
}
