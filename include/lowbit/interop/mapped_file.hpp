/// \file
/// \brief A read-only file in memory: memory-mapped on POSIX, read into a buffer elsewhere.
///
/// Checkpoint readers return views into these bytes, so the file must outlive the views; the
/// readers hold the mapped_file for that reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define LOWBIT_HAS_MMAP 1
#endif

namespace lowbit {
namespace interop {

class mapped_file {
 public:
  mapped_file() = default;

  /// Maps `path` read-only; a missing or unreadable file is a lowbit::error naming it.
  explicit mapped_file(const std::string& path) {
#if defined(LOWBIT_HAS_MMAP)
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    LOWBIT_CHECK(fd >= 0, "cannot open '" << path << "'");
    struct stat info {};
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
      ::close(fd);
      LOWBIT_CHECK(false, "'" << path << "' is not a regular file");
    }
    size_ = static_cast<std::size_t>(info.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      ::close(fd);
      LOWBIT_CHECK(p != MAP_FAILED, "cannot map '" << path << "' (" << size_ << " bytes)");
      mapping_ = p;
      data_ = static_cast<const uint8_t*>(p);
    } else {
      ::close(fd);
    }
#else
    std::ifstream in(path, std::ios::binary);
    LOWBIT_CHECK(in.good(), "cannot open '" << path << "'");
    buffer_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    data_ = reinterpret_cast<const uint8_t*>(buffer_.data());
    size_ = buffer_.size();
#endif
  }

  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& other) noexcept { swap(other); }
  mapped_file& operator=(mapped_file&& other) noexcept {
    mapped_file moved(std::move(other));
    swap(moved);
    return *this;
  }
  ~mapped_file() {
#if defined(LOWBIT_HAS_MMAP)
    if (mapping_) ::munmap(mapping_, size_);
#endif
  }

  const uint8_t* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }

 private:
  void swap(mapped_file& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(mapping_, other.mapping_);
    std::swap(buffer_, other.buffer_);
  }

  const uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  void* mapping_ = nullptr;
  std::vector<char> buffer_;
};

/// Writes bytes to `path`, replacing it; failure is a lowbit::error.
inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  LOWBIT_CHECK(out.good(), "cannot create '" << path << "'");
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  LOWBIT_CHECK(out.good(), "cannot write " << bytes.size() << " bytes to '" << path << "'");
}

}  // namespace interop
}  // namespace lowbit
