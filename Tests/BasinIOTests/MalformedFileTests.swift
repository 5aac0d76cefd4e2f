import BasinIO
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// Each corruption gets its own typed error whose message names the file (and the tensor when there
/// is one) — never a crash.
final class MalformedFileTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func file(_ name: String, header: String, data: Int, declaredLength: UInt64? = nil) throws -> URL {
        var bytes = [UInt8]()
        let h = Array(header.utf8)
        withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { bytes += $0 }
        bytes += h
        bytes += [UInt8](repeating: 7, count: data)
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url
    }

    private func expect(_ url: URL, _ kind: BasinIOError.Kind, tensor: String? = nil, mentions: String? = nil,
                        file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile(url: url), file: file, line: line) { error in
            guard let e = error as? BasinIOError else { return XCTFail("not a BasinIOError: \(error)", file: file, line: line) }
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            XCTAssertTrue(e.description.hasPrefix(url.path), "message names the file: \(e)", file: file, line: line)
            if let tensor { XCTAssertTrue(e.description.contains("'\(tensor)'"), "message names the tensor: \(e)", file: file, line: line) }
            if let mentions { XCTAssertTrue(e.description.contains(mentions), "message says \(mentions): \(e)", file: file, line: line) }
        }
    }

    func testTooShortForHeaderLength() throws {
        let url = dir.appendingPathComponent("short.safetensors")
        try Data([1, 2, 3]).write(to: url)
        expect(url, .truncatedHeaderLength, mentions: "3 bytes")
    }

    func testEmptyFile() throws {
        let url = dir.appendingPathComponent("empty.safetensors")
        try Data().write(to: url)
        expect(url, .truncatedHeaderLength)
    }

    func testAbsurdHeaderLength() throws {
        expect(try file("absurd.safetensors", header: "{}", data: 0, declaredLength: 1 << 50), .absurdHeaderLength)
    }

    func testHeaderLengthPastEnd() throws {
        expect(try file("past.safetensors", header: "{}", data: 0, declaredLength: 4096), .headerPastEnd, mentions: "4096")
    }

    func testBadJSON() throws {
        expect(try file("json.safetensors", header: #"{"a": {"dtype": "F32", "shape": [1], "#, data: 4), .badJSON)
    }

    func testHeaderNotUTF8() throws {
        var bytes = [UInt8]()
        withUnsafeBytes(of: UInt64(4).littleEndian) { bytes += $0 }
        bytes += [0x7B, 0xFF, 0xFE, 0x7D]
        let url = dir.appendingPathComponent("utf8.safetensors")
        try Data(bytes).write(to: url)
        expect(url, .headerNotUTF8)
    }

    func testHeaderNotAnObject() throws {
        expect(try file("array.safetensors", header: "[1, 2]", data: 0), .headerNotObject)
    }

    func testUnknownDType() throws {
        expect(try file("dtype.safetensors", header: #"{"w": {"dtype": "F8_E9", "shape": [2], "data_offsets": [0, 2]}}"#, data: 2),
               .unknownDType, tensor: "w", mentions: "F8_E9")
    }

    func testShapeTimesDTypeMismatch() throws {
        expect(try file("size.safetensors", header: #"{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}"#, data: 20),
               .sizeMismatch, tensor: "w", mentions: "24 bytes")
    }

    func testOverlappingOffsets() throws {
        let h = #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#
        expect(try file("overlap.safetensors", header: h, data: 12), .overlappingTensors, tensor: "b", mentions: "'a'")
    }

    func testOffsetsPastDataArea() throws {
        expect(try file("trunc.safetensors", header: #"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}"#, data: 10),
               .offsetsOutsideData, tensor: "w")
    }

    func testTruncatedRealFile() throws {
        let bytes = try Data(contentsOf: Fixtures.mlpSeed0)
        let url = dir.appendingPathComponent("cut.safetensors")
        try bytes.prefix(bytes.count - 100).write(to: url)
        expect(url, .offsetsOutsideData, mentions: "truncated")
    }

    func testReversedOffsets() throws {
        expect(try file("rev.safetensors", header: #"{"w": {"dtype": "U8", "shape": [4], "data_offsets": [4, 0]}}"#, data: 4),
               .badOffsets, tensor: "w")
    }

    func testNegativeDimension() throws {
        expect(try file("neg.safetensors", header: #"{"w": {"dtype": "U8", "shape": [-4], "data_offsets": [0, 4]}}"#, data: 4),
               .badShape, tensor: "w")
    }

    func testEntryWithoutDType() throws {
        expect(try file("nodtype.safetensors", header: #"{"w": {"shape": [4], "data_offsets": [0, 4]}}"#, data: 4),
               .malformedEntry, tensor: "w", mentions: "dtype")
    }

    func testNonStringMetadata() throws {
        expect(try file("meta.safetensors", header: #"{"__metadata__": {"epochs": 3}}"#, data: 0), .badMetadata, mentions: "epochs")
    }

    func testBytesNoTensorCovers() throws {
        expect(try file("gap.safetensors", header: #"{"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}"#, data: 9),
               .uncoveredBytes)
        expect(try file("hole.safetensors", header: #"{"w": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}"#, data: 6),
               .uncoveredBytes, tensor: "w")
    }

    func testMissingFile() {
        expect(dir.appendingPathComponent("nope.safetensors"), .unreadable, mentions: "cannot be read")
    }

    func testMissingTensorByName() throws {
        let f = try SafeTensorsFile(url: Fixtures.mlpSeed0)
        XCTAssertThrowsError(try f.tensor("layers.9.weight")) { error in
            XCTAssertEqual((error as? BasinIOError)?.kind, .missingTensor)
            XCTAssertTrue("\(error)".contains("'layers.9.weight'"))
        }
    }

    func testShardMissingFromIndex() throws {
        try SafeTensorsWriter.write([("a", Tensor(shape: [1], storage: [1]))], to: dir.appendingPathComponent("s1.safetensors"))
        let index = dir.appendingPathComponent("m.safetensors.index.json")
        try Data(#"{"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}"#.utf8).write(to: index)
        XCTAssertThrowsError(try ShardedCheckpoint(indexURL: index)) { error in
            let e = error as? BasinIOError
            XCTAssertEqual(e?.kind, .missingShard)
            XCTAssertTrue("\(error)".contains("s2.safetensors") && "\(error)".contains("'b'"), "\(error)")
        }
    }

    func testIndexClaimsTensorItsShardLacks() throws {
        try SafeTensorsWriter.write([("a", Tensor(shape: [1], storage: [1]))], to: dir.appendingPathComponent("s1.safetensors"))
        let index = dir.appendingPathComponent("m.safetensors.index.json")
        try Data(#"{"weight_map": {"a": "s1.safetensors", "ghost": "s1.safetensors"}}"#.utf8).write(to: index)
        XCTAssertThrowsError(try ShardedCheckpoint(indexURL: index)) { error in
            XCTAssertEqual((error as? BasinIOError)?.kind, .shardMissingTensor)
            XCTAssertTrue("\(error)".contains("'ghost'"))
        }
    }

    func testIndexNotJSON() throws {
        let index = dir.appendingPathComponent("m.safetensors.index.json")
        try Data("weight_map: nope".utf8).write(to: index)
        XCTAssertThrowsError(try ShardedCheckpoint(indexURL: index)) { error in
            XCTAssertEqual((error as? BasinIOError)?.kind, .badIndex)
        }
    }

    func testDatasetWithoutLabels() throws {
        let url = dir.appendingPathComponent("d.safetensors")
        try SafeTensorsWriter.write([("x", Tensor(shape: [2, 2], repeating: 0))], to: url)
        XCTAssertThrowsError(try Dataset(url: url)) { error in
            XCTAssertEqual((error as? BasinIOError)?.kind, .badDataset)
            XCTAssertTrue("\(error)".contains("'y'"))
        }
    }

    func testDatasetWithFloatLabels() throws {
        let url = dir.appendingPathComponent("d.safetensors")
        try SafeTensorsWriter.write([("x", Tensor(shape: [2, 2], repeating: 0)), ("y", Tensor(shape: [2], storage: [0, 1]))], to: url)
        XCTAssertThrowsError(try Dataset(url: url)) { error in
            XCTAssertEqual((error as? BasinIOError)?.kind, .unsupportedDType)
        }
    }
}
