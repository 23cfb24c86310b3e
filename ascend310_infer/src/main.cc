/**
 * DLRM batch inference with the MindSpore C++ API.
 *
 * Loads a MINDIR exported by export.py (inputs: ids int32 [B, S], dense float32 [B, Dn];
 * output: click probability float32 [B, 1]), runs every batch that preprocess.py wrote and writes
 *   <result_path>/<batch>_0.bin            float32 [b, 1], little-endian
 *   <time_path>/test_perform_static.txt    mean Predict latency
 * S and Dn are read from the model's inputs; b from each batch file's size.
 *
 *   main --mindir_path=dlrm.mindir --input0_path=preprocess_Result/00_ids \
 *        --input1_path=preprocess_Result/01_dense [--result_path=./result_Files] [--time_path=./time_Result]
 *        [--device_type=Ascend310|Ascend|GPU|CPU] [--device_id=0]
 */
#include <cstdint>
#include <cstring>
#include <exception>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/serialization.h"
#include "include/api/types.h"
#include "inc/utils.h"

using mindspore::AscendDeviceInfo;
using mindspore::Context;
using mindspore::CPUDeviceInfo;
using mindspore::GPUDeviceInfo;
using mindspore::Graph;
using mindspore::GraphCell;
using mindspore::kSuccess;
using mindspore::Model;
using mindspore::ModelType;
using mindspore::MSTensor;
using mindspore::Serialization;
using mindspore::Status;

namespace {

struct Flags {
  std::map<std::string, std::string> values = {
      {"mindir_path", ""},           {"input0_path", ""},           {"input1_path", ""},
      {"result_path", "./result_Files"}, {"time_path", "./time_Result"}, {"device_type", "Ascend310"},
      {"device_id", "0"}};
  const std::string &operator[](const std::string &key) const { return values.at(key); }
};

bool ParseFlags(int argc, char **argv, Flags *flags) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
      std::cerr << "bad argument '" << arg << "': expected --name=value" << std::endl;
      return false;
    }
    std::string key = arg.substr(2, eq - 2);
    if (flags->values.count(key) == 0) {
      std::cerr << "unknown flag --" << key << "; known:";
      for (const auto &kv : flags->values) std::cerr << " --" << kv.first;
      std::cerr << std::endl;
      return false;
    }
    flags->values[key] = arg.substr(eq + 1);
  }
  for (const char *required : {"mindir_path", "input0_path", "input1_path"}) {
    if ((*flags)[required].empty()) {
      std::cerr << "--" << required << " is required" << std::endl;
      return false;
    }
  }
  return true;
}

std::shared_ptr<Context> MakeContext(const std::string &device, uint32_t device_id) {
  auto context = std::make_shared<Context>();
  auto &infos = context->MutableDeviceInfo();
  if (device == "Ascend310" || device == "Ascend") {
    auto info = std::make_shared<AscendDeviceInfo>();
    info->SetDeviceID(device_id);
    infos.push_back(info);
  } else if (device == "GPU") {
    auto info = std::make_shared<GPUDeviceInfo>();
    info->SetDeviceID(device_id);
    infos.push_back(info);
  } else if (device == "CPU") {
    infos.push_back(std::make_shared<CPUDeviceInfo>());
  } else {
    std::cerr << "--device_type=" << device << " is not one of Ascend310, Ascend, GPU, CPU" << std::endl;
    return nullptr;
  }
  return context;
}

}  // namespace

int main(int argc, char **argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) return 2;
  auto context = MakeContext(flags["device_type"], static_cast<uint32_t>(std::stoul(flags["device_id"])));
  if (context == nullptr) return 2;

  Graph graph;
  Model model;
  Status ret;
  try {  // some runtimes throw instead of returning a Status (e.g. on a MindIR version they cannot read)
    ret = Serialization::Load(flags["mindir_path"], ModelType::kMindIR, &graph);
    if (ret != kSuccess) {
      std::cerr << "cannot load MINDIR '" << flags["mindir_path"] << "': " << ret.ToString() << std::endl;
      return 1;
    }
    ret = model.Build(GraphCell(graph), context);
  } catch (const std::exception &e) {
    std::cerr << "cannot load MINDIR '" << flags["mindir_path"] << "': " << e.what() << std::endl;
    return 1;
  }
  if (ret != kSuccess) {
    std::cerr << "Model::Build failed for '" << flags["mindir_path"] << "' on " << flags["device_type"] << ": "
              << ret.ToString() << std::endl;
    return 1;
  }
  std::vector<MSTensor> inputs = model.GetInputs();
  if (inputs.size() != 2) {
    std::cerr << "the model has " << inputs.size() << " inputs; DLRM's are (ids, dense)" << std::endl;
    return 1;
  }
  const int64_t widths[2] = {inputs[0].Shape().back(), inputs[1].Shape().back()};
  const std::string dirs[2] = {flags["input0_path"], flags["input1_path"]};
  const size_t elem[2] = {sizeof(int32_t), sizeof(float)};

  std::vector<std::string> names = ListBatches(dirs[0]);
  if (names.empty()) {
    std::cerr << "no *.bin batch files in '" << dirs[0] << "'" << std::endl;
    return 1;
  }
  if (!MakeDirs(flags["result_path"]) || !MakeDirs(flags["time_path"])) return 1;

  int64_t current_batch = -1;
  double total_ms = 0.0;
  int64_t samples = 0;
  std::vector<char> data[2];
  for (const std::string &name : names) {
    int64_t rows[2];
    for (int i = 0; i < 2; ++i) {
      const std::string path = dirs[i] + "/" + name + ".bin";
      if (!ReadFile(path, &data[i])) return 1;
      const size_t row_bytes = elem[i] * static_cast<size_t>(widths[i]);
      if (data[i].empty() || data[i].size() % row_bytes != 0) {
        std::cerr << "'" << path << "' has " << data[i].size() << " bytes, not a positive multiple of "
                  << row_bytes << " (one row of " << widths[i] << " values)" << std::endl;
        return 1;
      }
      rows[i] = static_cast<int64_t>(data[i].size() / row_bytes);
    }
    if (rows[0] != rows[1]) {
      std::cerr << "batch '" << name << "': " << rows[0] << " rows in " << dirs[0] << " but " << rows[1] << " in "
                << dirs[1] << std::endl;
      return 1;
    }
    if (rows[0] != current_batch) {
      ret = model.Resize(inputs, {{rows[0], widths[0]}, {rows[1], widths[1]}});
      if (ret != kSuccess) {
        std::cerr << "Model::Resize to batch " << rows[0] << " failed (was the MINDIR exported with a fixed "
                  << "batch? export_batch_size=0 exports a dynamic one): " << ret.ToString() << std::endl;
        return 1;
      }
      inputs = model.GetInputs();
      current_batch = rows[0];
    }
    for (int i = 0; i < 2; ++i) {
      if (inputs[i].DataSize() != data[i].size()) {
        std::cerr << "input " << i << " expects " << inputs[i].DataSize() << " bytes, batch '" << name << "' has "
                  << data[i].size() << std::endl;
        return 1;
      }
      std::memcpy(inputs[i].MutableData(), data[i].data(), data[i].size());
    }
    std::vector<MSTensor> outputs;
    const double start = NowMs();
    ret = model.Predict(inputs, &outputs);
    total_ms += NowMs() - start;
    if (ret != kSuccess || outputs.empty()) {
      std::cerr << "Predict failed on batch '" << name << "': " << ret.ToString() << std::endl;
      return 1;
    }
    const std::string out_path = flags["result_path"] + "/" + name + "_0.bin";
    if (!WriteFileAtomic(out_path, outputs[0].MutableData(), outputs[0].DataSize())) return 1;
    samples += rows[0];
  }

  std::ostringstream text;
  text << std::fixed << std::setprecision(3) << "NN inference cost average time: " << total_ms / names.size()
       << " ms of infer_count " << names.size() << "\n"
       << std::setprecision(1) << "samples: " << samples << ", samples/s: " << samples / (total_ms / 1000.0) << "\n";
  const std::string s = text.str();
  if (!WriteFileAtomic(flags["time_path"] + "/test_perform_static.txt", s.data(), s.size())) return 1;
  std::cout << s;
  return 0;
}
