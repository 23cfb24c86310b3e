#include "inc/utils.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>

bool ParseFlags(int argc, char **argv, const std::vector<std::string> &required,
                std::map<std::string, std::string> *flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
      std::cerr << "bad argument '" << arg << "': expected --name=value" << std::endl;
      return false;
    }
    const std::string key = arg.substr(2, eq - 2);
    if (flags->count(key) == 0) {
      std::cerr << "unknown flag --" << key << "; known:";
      for (const auto &kv : *flags) std::cerr << " --" << kv.first;
      std::cerr << std::endl;
      return false;
    }
    (*flags)[key] = arg.substr(eq + 1);
  }
  for (const std::string &name : required) {
    if ((*flags)[name].empty()) {
      std::cerr << "--" << name << " is required" << std::endl;
      return false;
    }
  }
  return true;
}

std::vector<std::string> ListBatches(const std::string &dir) {
  std::vector<std::string> names;
  DIR *d = opendir(dir.c_str());
  if (d == nullptr) {
    return names;
  }
  const std::string ext = ".bin";
  for (struct dirent *e = readdir(d); e != nullptr; e = readdir(d)) {
    std::string name = e->d_name;
    if (name.size() <= ext.size() || name.compare(name.size() - ext.size(), ext.size(), ext) != 0) {
      continue;
    }
    struct stat st;
    if (stat((dir + "/" + name).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      names.push_back(name.substr(0, name.size() - ext.size()));
    }
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool ReadFile(const std::string &path, std::vector<char> *out) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) {
    std::cerr << "cannot open '" << path << "': " << std::strerror(errno) << std::endl;
    return false;
  }
  std::streamsize size = f.tellg();
  f.seekg(0, std::ios::beg);
  out->resize(static_cast<size_t>(size));
  if (size > 0 && !f.read(out->data(), size)) {
    std::cerr << "cannot read " << size << " bytes from '" << path << "'" << std::endl;
    return false;
  }
  return true;
}

bool WriteFileAtomic(const std::string &path, const void *data, size_t size) {
  const std::string tmp = path + ".tmp-" + std::to_string(getpid());
  FILE *f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    std::cerr << "cannot create '" << tmp << "': " << std::strerror(errno) << std::endl;
    return false;
  }
  bool ok = std::fwrite(data, 1, size, f) == size;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::cerr << "cannot write '" << path << "': " << std::strerror(errno) << std::endl;
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

bool MakeDirs(const std::string &dir) {
  std::string part;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    part = dir.substr(0, pos);
    if (part.empty()) {
      continue;
    }
    if (mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
      std::cerr << "cannot create folder '" << part << "': " << std::strerror(errno) << std::endl;
      return false;
    }
  }
  return true;
}

double NowMs() {
  auto t = std::chrono::steady_clock::now().time_since_epoch();
  return std::chrono::duration<double, std::milli>(t).count();
}
