/**
 * Converts an ONNX model exported by export.py into the model file that MindSpore Lite's runtime builds
 * from (Lite's MindIR), with the converter library of the same Lite package.
 *
 *   converter --onnx_path=dlrm.onnx --output_path=dlrm_lite.mindir [--weight_fp16=0|1] [--device=CPU|Ascend]
 *
 * The output appears only when the conversion succeeded: the converter writes into a temporary folder
 * beside it, whose entries are renamed into place. A model over the converter's 1 GB budget comes out as
 * X_graph.mindir plus X_variables/ (the graph refers to the folder by that name, so the temporary
 * folder holds the final names); the last line printed names the file to load. A previous output in
 * the other layout is removed. Errors name the file and the reason; the exit code is 1 (2 for bad
 * arguments). --device=Ascend asks the converter for the Ascend-targeted model (not run on this project's
 * machines: they have no Ascend device).
 */
#include <sys/stat.h>
#include <unistd.h>

#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "inc/lite_converter.h"
#include "inc/utils.h"

namespace {

std::vector<char> Chars(const std::string &s) { return std::vector<char>(s.begin(), s.end()); }

namespace fs = std::filesystem;

bool IsReadableFile(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), R_OK) == 0;
}

// Moves the converter's outputs from `tmp` into `dest_dir`, first removing a previous output of the
// other layout (X.mindir vs X_graph.mindir + X_variables/). Returns the file to load, "" on failure.
std::string MoveOutputs(const fs::path &tmp, const fs::path &dest_dir, const std::string &base) {
  std::error_code ec;
  const fs::path single = base + ".mindir", graph = base + "_graph.mindir", vars = base + "_variables";
  const bool large = fs::exists(tmp / graph);
  if (!large && !fs::exists(tmp / single)) {
    std::cerr << "the converter reported success but wrote neither " << single << " nor " << graph << " in "
              << tmp << std::endl;
    return "";
  }
  for (const fs::path &name : {single, graph, vars}) fs::remove_all(dest_dir / name, ec);
  for (const fs::path &name : large ? std::vector<fs::path>{vars, graph} : std::vector<fs::path>{single}) {
    fs::rename(tmp / name, dest_dir / name, ec);
    if (ec) {
      std::cerr << "cannot move " << (tmp / name) << " to " << (dest_dir / name) << ": " << ec.message() << std::endl;
      return "";
    }
  }
  return (dest_dir / (large ? graph : single)).string();
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
  const fs::path out_path = fs::absolute(out);
  const std::string base = out_path.filename().string().substr(0, out_path.filename().string().size() - suffix.size());
  const fs::path tmp = out_path.parent_path() / ("." + base + ".convert-" + std::to_string(getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec)) {
    std::cerr << "cannot create the temporary folder " << tmp << " for '" << out << "': " << ec.message() << std::endl;
    return 1;
  }
  const std::string prefix = (tmp / base).string();
  mindspore::Status status;
  try {  // the library may throw on a model it cannot parse
    mindspore::Converter converter(mindspore::converter::kFmkTypeOnnx, Chars(onnx), Chars(prefix), Chars(""));
    converter.SetSaveType(mindspore::kMindIR);
    converter.SetWeightFp16(flags["weight_fp16"] == "1");
    if (flags["device"] == "Ascend") converter.SetDevice(Chars("Ascend"));
    status = converter.Convert();
  } catch (const std::exception &e) {
    fs::remove_all(tmp, ec);
    std::cerr << "cannot convert '" << onnx << "': " << e.what() << std::endl;
    return 1;
  }
  if (status != mindspore::kSuccess) {
    fs::remove_all(tmp, ec);
    std::cerr << "cannot convert '" << onnx << "': " << status.ToString() << std::endl;
    return 1;
  }
  const std::string model = MoveOutputs(tmp, out_path.parent_path(), base);
  fs::remove_all(tmp, ec);
  if (model.empty()) return 1;
  std::cout << "converted " << onnx << " -> " << model << std::endl;
  return 0;
}
