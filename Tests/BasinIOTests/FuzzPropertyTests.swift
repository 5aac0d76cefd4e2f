import BasinFuzzTargets
import BasinIO
import BasinTensor
import BasinTestSupport
import Foundation
import PropertyBased
import Testing
import XCTest

/// The committed fuzz corpus (Tests/FuzzCorpus/<target>/) replayed through every target: regressions of
/// anything the fuzzer once found stay fixed. `.ci/run` fuzzes the same targets with libFuzzer.
final class FuzzCorpusTests: XCTestCase {
    func testEveryCorpusFileRunsWithoutACrash() throws {
        let corpus = Fixtures.root.deletingLastPathComponent().appendingPathComponent("FuzzCorpus")
        var ran = 0
        for target in FuzzTarget.allCases {
            let folder = corpus.appendingPathComponent(target.rawValue)
            let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
            XCTAssertFalse(files.isEmpty, "no corpus for \(target.rawValue)")
            for name in files {
                let data = try Data(contentsOf: folder.appendingPathComponent(name))
                data.withUnsafeBytes { target.run($0) }
                ran += 1
            }
        }
        XCTAssertGreaterThanOrEqual(ran, FuzzTarget.allCases.count)
    }
}

/// Random files built from random "genes": a header whose entries, dtypes, shapes and offsets are drawn at
/// random (often inconsistent), data of random length, sometimes a lying header length.
enum RandomFile {
    static let dtypes = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8", "f32", ""]
    static let names = ["w", "x", "y", "layers.0.weight", "__metadata__"]

    static func safetensors(_ genes: [Int], dataLength: Int) -> [UInt8] {
        var g = genes.makeIterator()
        func next(_ n: Int) -> Int { (g.next() ?? 0) % n }
        var header: [String: Any] = [:]
        let entries = next(5)
        for _ in 0..<entries {
            let name = names[next(names.count)]
            if name == "__metadata__" {
                header[name] = next(3) == 0 ? ["k": next(2) == 0 ? "v" : 3] : "not an object"
                continue
            }
            var entry: [String: Any] = [:]
            if next(8) != 0 { entry["dtype"] = dtypes[next(dtypes.count)] }
            if next(8) != 0 { entry["shape"] = (0..<next(4)).map { _ in next(10) == 0 ? -1 : next(7) } }
            if next(8) != 0 {
                let begin = next(12) == 0 ? -8 : next(64)
                entry["data_offsets"] = next(10) == 0 ? [begin] : [begin, begin + next(72) - 4]
            }
            header[name] = next(16) == 0 ? "junk" : entry
        }
        var json = (try? JSONSerialization.data(withJSONObject: header)).map { [UInt8]($0) } ?? []
        if next(10) == 0, !json.isEmpty { json.removeLast() }
        var length = UInt64(json.count)
        switch next(12) {
        case 0: length += UInt64(next(64))
        case 1: length = UInt64.max - UInt64(next(3))
        default: break
        }
        var bytes = withUnsafeBytes(of: length.littleEndian) { [UInt8]($0) }
        bytes += json
        bytes += (0..<dataLength).map { _ in UInt8(truncatingIfNeeded: next(256)) }
        return bytes
    }

    static func dataSet(_ genes: [Int]) -> [UInt8] {
        var g = genes.makeIterator()
        func next(_ n: Int) -> Int { (g.next() ?? 0) % n }
        let rows = next(4), features = next(3)
        let xType = ["F32", "F16", "I64", "BF16"][next(4)], yType = ["I64", "U8", "F32", "I32"][next(4)]
        let yRows = next(5) == 0 ? rows + 1 : rows
        let xShape = next(6) == 0 ? [rows] : [rows, features]
        let xBytes = xShape.reduce(1, *) * (xType == "I64" ? 8 : xType == "F32" ? 4 : 2)
        let ySize = ["I64": 8, "U8": 1, "F32": 4, "I32": 4][yType]!
        let header: [String: Any] = [
            "x": ["dtype": xType, "shape": xShape, "data_offsets": [0, xBytes]],
            "y": ["dtype": yType, "shape": [yRows], "data_offsets": [xBytes, xBytes + yRows * ySize]],
        ]
        let json = [UInt8]((try? JSONSerialization.data(withJSONObject: header)) ?? Data())
        var bytes = withUnsafeBytes(of: UInt64(json.count).littleEndian) { [UInt8]($0) } + json
        let total = xBytes + yRows * ySize
        bytes += (0..<total).map { i in i >= xBytes ? UInt8(truncatingIfNeeded: next(5) == 0 ? 255 : next(12)) : UInt8(truncatingIfNeeded: next(256)) }
        return bytes
    }
}

/// Properties: any bytes either open as a consistent file or give a BasinIOError naming the file — never a trap.
@Suite struct HostileFileProperties {
    let url = URL(fileURLWithPath: "/property/random.safetensors")

    @Test func randomSafetensorsHeadersOpenConsistentlyOrGiveATypedError() async {
        await propertyCheck(count: 3000, input: Gen.int(in: 0...1_000_000).array(of: 0...60), Gen.int(in: 0...96)) { genes, dataLength in
            let bytes = RandomFile.safetensors(genes, dataLength: dataLength)
            do {
                let file = try bytes.withUnsafeBytes { try SafeTensorsFile(bytes: $0, url: url) }
                var covered = 0
                for name in file.names {
                    let info = try #require(file.info(name))
                    #expect(info.byteCount == info.elementCount * info.dtype.byteSize, "\(name)")
                    covered += info.byteCount
                    let t = try file.tensor(name)
                    #expect(t.count == info.elementCount)
                }
                #expect(covered == bytes.count - 8 - file.headerLength)
            } catch let e as BasinIOError {
                #expect(e.description.hasPrefix(url.path), "\(e)")
            } catch {
                Issue.record("untyped error: \(error)")
            }
        }
    }

    @Test func randomDataFilesLoadOrGiveATypedError() async {
        await propertyCheck(count: 2000, input: Gen.int(in: 0...1_000_000).array(of: 0...80)) { genes in
            let bytes = RandomFile.dataSet(genes)
            do {
                let file = try bytes.withUnsafeBytes { try SafeTensorsFile(bytes: $0, url: url) }
                let data = try Dataset(file: file)
                #expect(data.count > 0)
                #expect(data.x.rows == data.y.count)
                #expect(data.y.allSatisfy { $0 >= 0 })
            } catch let e as BasinIOError {
                #expect(e.description.hasPrefix(url.path), "\(e)")
            } catch {
                Issue.record("untyped error: \(error)")
            }
        }
    }
}
