#!/bin/sh
# Regenerates onnx.pb.swift from onnx.proto. Run by hand, never by the build: the package depends only on the
# SwiftProtobuf runtime library, and the generated file is committed (building protoc-gen-swift takes ~10 minutes).
#
# onnx.proto is onnx/onnx.proto of the ONNX repository at tag v1.12.0 (commit f7ee1ac60d06abe8e26c9b6bbe1e3db5286b614b),
# the release that introduced opset 17 and whose IR_VERSION is 8 — what torch.onnx.export (opset 17) writes. It is the
# proto2 file, unmodified (Apache-2.0, see its SPDX header). Later IR versions only add fields, and a proto2 reader
# keeps unknown fields, so newer files still parse.
#
# Needs: protoc (Debian: apt-get install -y protobuf-compiler; 3.21.12 was used) and protoc-gen-swift built from
# apple/swift-protobuf at the same version as Package.swift's dependency (1.39.0), outside this repository:
#   git clone https://github.com/apple/swift-protobuf /tmp/swift-protobuf
#   git -C /tmp/swift-protobuf checkout 1.39.0
#   (cd /tmp/swift-protobuf && swift build -c release --product protoc-gen-swift)
#   PROTOC_GEN_SWIFT=/tmp/swift-protobuf/.build/release/protoc-gen-swift Sources/BasinIO/ONNX/regenerate.sh
#
# Types are internal to BasinIO (Visibility=Internal): the rest of Basin sees ONNXModel, not protobuf messages.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
plugin=${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift || true)}
if [ -z "$plugin" ] || [ ! -x "$plugin" ]; then
    echo "regenerate.sh: set PROTOC_GEN_SWIFT to a protoc-gen-swift built from swift-protobuf 1.39.0" >&2
    exit 1
fi
protoc --plugin=protoc-gen-swift="$plugin" \
    --proto_path="$here" \
    --swift_opt=Visibility=Internal \
    --swift_opt=FileNaming=DropPath \
    --swift_out="$here" \
    "$here/onnx.proto"
echo "wrote $here/onnx.pb.swift"
