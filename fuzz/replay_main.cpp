// Replay driver for fuzz targets in builds without libFuzzer (gcc, release, asan test legs): feeds every
// file named on the command line (directories are walked, sorted by name so runs are reproducible) to
// LLVMFuzzerTestOneInput, then optionally `--random=N` pseudo-random inputs from a fixed seed. A failing
// input aborts inside the target; the driver prints each file name first so the culprit is known.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

std::vector<std::uint8_t> read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void run_one(const fs::path& p) {
    std::fprintf(stderr, "replay: %s\n", p.string().c_str());
    const auto bytes = read_file(p);
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t files = 0;
    std::size_t random_inputs = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg.rfind("--random=", 0) == 0) {
            random_inputs = std::strtoull(arg.c_str() + 9, nullptr, 10);
            continue;
        }
        const fs::path p(arg);
        if (fs::is_directory(p)) {
            std::vector<fs::path> entries;
            for (const auto& e : fs::directory_iterator(p)) {
                if (e.is_regular_file()) entries.push_back(e.path());
            }
            std::sort(entries.begin(), entries.end());
            for (const auto& e : entries) run_one(e);
            files += entries.size();
        } else if (fs::is_regular_file(p)) {
            run_one(p);
            ++files;
        } else {
            std::fprintf(stderr, "replay: no such file or directory: %s\n", arg.c_str());
            return 2;
        }
    }
    std::mt19937_64 rng(0x1DE5EED);
    for (std::size_t i = 0; i < random_inputs; ++i) {
        std::vector<std::uint8_t> bytes(1 + rng() % 1024);
        for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
        LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    }
    std::fprintf(stderr, "replay: %zu files, %zu random inputs, all passed\n", files, random_inputs);
    return files == 0 && random_inputs == 0 ? 2 : 0;
}
