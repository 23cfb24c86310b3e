/**
 * DLRM batch inference with the MindSpore C++ API.
 *
 * Runs every batch that preprocess.py wrote through a model with inputs ids int32 [B, S] and
 * dense float32 [B, Dn] (or ids alone: a model without dense features) and output click probability
 * float32 [B, 1], and writes
 *   <result_path>/<batch>_0.bin            float32 [b, 1], little-endian, one row per real sample
 *   <time_path>/test_perform_static.txt    mean Predict latency
 * S and Dn are read from the model's inputs (the int32 input is the ids); b from each batch file's size.
 *
 *   main --mindir_path=MODEL --input0_path=preprocess_Result/00_ids [--input1_path=preprocess_Result/01_dense]
 *        [--result_path=./result_Files] [--time_path=./time_Result] [--device_type=Ascend310|Ascend|GPU|CPU]
 *        [--device_id=0] [--load_mode=auto|file|graph]
 *
 * How the model is built (--load_mode):
 *   file   Model::Build(path, kMindIR, context): what MindSpore Lite's runtime supports (a model file
 *          made by its converter, ascend310_infer/out/converter).
 *   graph  Serialization::Load + Model::Build(GraphCell): what a full MindSpore (Ascend) install offers
 *          for a MINDIR from export.py.
 *   auto   file first, then graph; the one that worked is printed.
 * Batch size: a model with a dynamic batch is resized to each batch. A fixed-batch model (every
 * converted ONNX model) gets each batch padded with zero rows up to its batch; only the real rows'
 * predictions are written. A batch larger than the model's is an error naming the file.
 */
#include <algorithm>
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

// One way of building; the reason it failed goes to *why. Some runtimes throw instead of returning a
// Status (e.g. on a MindIR version they cannot read).
bool TryBuild(Model *model, const std::string &path, const std::shared_ptr<Context> &context, const std::string &mode,
              std::string *why) {
  Status ret;
  try {
    if (mode == "file") {
      ret = model->Build(path, ModelType::kMindIR, context);
    } else {
      Graph graph;
      ret = Serialization::Load(path, ModelType::kMindIR, &graph);
      if (ret == kSuccess) ret = model->Build(GraphCell(graph), context);
    }
  } catch (const std::exception &e) {
    *why = e.what();
    return false;
  }
  *why = ret.ToString();
  return ret == kSuccess;
}

bool BuildModel(Model *model, const std::string &path, const std::shared_ptr<Context> &context,
                const std::string &load_mode) {
  std::vector<std::string> modes;
  if (load_mode == "auto") {
    modes = {"file", "graph"};
  } else if (load_mode == "file" || load_mode == "graph") {
    modes = {load_mode};
  } else {
    std::cerr << "--load_mode=" << load_mode << " is not one of auto, file, graph" << std::endl;
    return false;
  }
  std::string failures;
  for (const std::string &mode : modes) {
    std::string why;
    if (TryBuild(model, path, context, mode, &why)) {
      std::cout << "built '" << path << "' (load_mode " << mode << ")" << std::endl;
      return true;
    }
    failures += "\n  load_mode " + mode + ": " + why;
  }
  std::cerr << "cannot build a model from '" << path << "':" << failures << std::endl;
  return false;
}

// The batch files of one input: its folder, element size and row width.
struct Input {
  std::string dir;
  size_t elem;
  int64_t width;
  int index;  // position among the model's inputs
};

// Reads batch `name` of every input; the row count goes to *rows. False (with a message) on a bad file.
bool ReadBatch(const std::vector<Input> &ins, const std::string &name, std::vector<std::vector<char>> *data,
               int64_t *rows) {
  for (size_t i = 0; i < ins.size(); ++i) {
    const std::string path = ins[i].dir + "/" + name + ".bin";
    if (!ReadFile(path, &(*data)[i])) return false;
    const size_t row_bytes = ins[i].elem * static_cast<size_t>(ins[i].width);
    if ((*data)[i].empty() || (*data)[i].size() % row_bytes != 0) {
      std::cerr << "'" << path << "' has " << (*data)[i].size() << " bytes, not a positive multiple of " << row_bytes
                << " (one row of " << ins[i].width << " values)" << std::endl;
      return false;
    }
    const int64_t n = static_cast<int64_t>((*data)[i].size() / row_bytes);
    if (i > 0 && n != *rows) {
      std::cerr << "batch '" << name << "': " << *rows << " rows in " << ins[0].dir << " but " << n << " in "
                << ins[i].dir << std::endl;
      return false;
    }
    *rows = n;
  }
  return true;
}

// The three lines of test_perform_static.txt, as src/inference/batch_files.py's format_time writes them.
std::string FormatTime(std::vector<double> lat, int64_t samples, double load_s) {
  double total = 0.0;
  for (double x : lat) total += x;
  std::sort(lat.begin(), lat.end());
  auto percentile = [&lat](double q) {   // linear interpolation, as numpy.percentile
    const double pos = q / 100.0 * static_cast<double>(lat.size() - 1);
    const size_t lo = static_cast<size_t>(pos);
    const size_t hi = std::min(lo + 1, lat.size() - 1);
    return lat[lo] + (lat[hi] - lat[lo]) * (pos - static_cast<double>(lo));
  };
  std::ostringstream text;
  text << std::fixed << std::setprecision(3) << "NN inference cost average time: " << total / lat.size()
       << " ms of infer_count " << lat.size() << "\n"
       << std::setprecision(1) << "samples: " << samples << ", samples/s: " << samples / (total / 1000.0) << "\n"
       << std::setprecision(3) << "latency ms: p50 " << percentile(50) << ", p99 " << percentile(99)
       << "; model load: " << load_s << " s\n";
  return text.str();
}

}  // namespace

int main(int argc, char **argv) {
  std::map<std::string, std::string> flags = {
      {"mindir_path", ""},           {"input0_path", ""},           {"input1_path", ""},
      {"result_path", "./result_Files"}, {"time_path", "./time_Result"}, {"device_type", "Ascend310"},
      {"device_id", "0"},            {"load_mode", "auto"}};
  if (!ParseFlags(argc, argv, {"mindir_path", "input0_path"}, &flags)) return 2;
  auto context = MakeContext(flags["device_type"], static_cast<uint32_t>(std::stoul(flags["device_id"])));
  if (context == nullptr) return 2;
  Model model;
  const double load_start = NowMs();
  if (!BuildModel(&model, flags["mindir_path"], context, flags["load_mode"])) return 1;
  const double load_ms = NowMs() - load_start;

  std::vector<MSTensor> inputs = model.GetInputs();
  const size_t want = flags["input1_path"].empty() ? 1 : 2;
  if (inputs.size() != want) {
    std::cerr << "the model has " << inputs.size() << " inputs but " << want << " input folder(s) were given: DLRM's "
              << "are (ids, dense), or ids alone for data without dense features" << std::endl;
    return 1;
  }
  // The int32 input is the ids (input0_path), the other the dense features (input1_path), whatever
  // order a converter gave them.
  const int ids_at = inputs[0].DataType() == mindspore::DataType::kNumberTypeInt32 ? 0 : 1;
  std::vector<Input> ins = {{flags["input0_path"], sizeof(int32_t), inputs[ids_at].Shape().back(), ids_at}};
  if (want == 2) ins.push_back({flags["input1_path"], sizeof(float), inputs[1 - ids_at].Shape().back(), 1 - ids_at});
  const int64_t fixed_batch = inputs[0].Shape().front();   // -1: dynamic
  std::vector<std::string> names = ListBatches(ins[0].dir);
  if (names.empty()) {
    std::cerr << "no *.bin batch files in '" << ins[0].dir << "'" << std::endl;
    return 1;
  }
  if (!MakeDirs(flags["result_path"]) || !MakeDirs(flags["time_path"])) return 1;

  int64_t current_batch = fixed_batch;
  std::vector<double> latencies;
  int64_t samples = 0;
  std::vector<std::vector<char>> data(ins.size());
  for (size_t b = 0; b <= names.size(); ++b) {   // b == 0: an untimed warm-up call on the first batch
    const std::string &name = names[b == 0 ? 0 : b - 1];
    int64_t rows = 0;
    if (!ReadBatch(ins, name, &data, &rows)) return 1;
    if (fixed_batch > 0 && rows > fixed_batch) {
      std::cerr << "batch '" << ins[0].dir << "/" << name << ".bin' has " << rows << " rows but the model's batch is "
                << "fixed at " << fixed_batch << ": export with export_batch_size >= test_batch_size" << std::endl;
      return 1;
    }
    if (fixed_batch <= 0 && rows != current_batch) {
      std::vector<std::vector<int64_t>> shapes;
      for (const MSTensor &t : inputs) shapes.push_back({rows, t.Shape().back()});
      Status ret = model.Resize(inputs, shapes);
      if (ret != kSuccess) {
        std::cerr << "Model::Resize to batch " << rows << " failed: " << ret.ToString() << std::endl;
        return 1;
      }
      inputs = model.GetInputs();
      current_batch = rows;
    }
    for (size_t i = 0; i < ins.size(); ++i) {   // pad a short last batch with zero rows (ids 0 = "missing")
      MSTensor &t = inputs[ins[i].index];
      if (data[i].size() > t.DataSize()) {
        std::cerr << "input " << ins[i].index << " holds " << t.DataSize() << " bytes, batch '" << name << "' has "
                  << data[i].size() << std::endl;
        return 1;
      }
      std::memset(t.MutableData(), 0, t.DataSize());
      std::memcpy(t.MutableData(), data[i].data(), data[i].size());
    }
    std::vector<MSTensor> outputs;
    const double start = NowMs();
    Status ret = model.Predict(inputs, &outputs);
    if (b > 0) latencies.push_back(NowMs() - start);
    if (ret != kSuccess || outputs.empty()) {
      std::cerr << "Predict failed on batch '" << name << "': " << ret.ToString() << std::endl;
      return 1;
    }
    if (b == 0) continue;
    const size_t real_bytes = static_cast<size_t>(rows) * sizeof(float);   // output float32 [B, 1]
    if (outputs[0].DataSize() < real_bytes) {
      std::cerr << "the model returned " << outputs[0].DataSize() << " bytes for " << rows << " rows" << std::endl;
      return 1;
    }
    if (!WriteFileAtomic(flags["result_path"] + "/" + name + "_0.bin", outputs[0].MutableData(), real_bytes)) return 1;
    samples += rows;
  }

  const std::string s = FormatTime(latencies, samples, load_ms / 1000.0);
  if (!WriteFileAtomic(flags["time_path"] + "/test_perform_static.txt", s.data(), s.size())) return 1;
  std::cout << s;
  return 0;
}
