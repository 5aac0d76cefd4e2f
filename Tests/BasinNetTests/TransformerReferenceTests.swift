import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// GPT-2 and LLaMA checkpoints written by Hugging Face transformers, against the logits and metrics
/// PyTorch computed for them (Tests/Fixtures/transformers, copied from ../shared).
final class TransformerReferenceTests: XCTestCase {
    static let models = ["gpt2-tiny-seed0", "gpt2-tiny-seed1", "llama-tiny-base", "llama-tiny-ft-add", "llama-tiny-ft-sub", "llama-tiny-ft-mul"]
    static let sets = ["test": "modarith-test", "add": "modarith-add-test", "sub": "modarith-sub-test", "mul": "modarith-mul-test"]

    func expected() throws -> [String: Any] { try Fixtures.json("transformers/expected.json") as! [String: Any] }

    func model(_ name: String) throws -> LoadedModel {
        try LoadedModel(path: Fixtures.url("transformers/\(name)").path)
    }

    func data(_ name: String) throws -> Dataset {
        try Dataset(url: Fixtures.url("data/\(name).safetensors"))
    }

    func testLogitsOfFirstEightTestRows() throws {
        let file = try SafeTensorsFile(url: Fixtures.url("transformers/logits.safetensors"))
        let ids = try file.tensor("input_ids")
        XCTAssertEqual(ids.shape, [8, 5])
        for name in ["gpt2-tiny-seed0", "llama-tiny-base"] {
            let m = try model(name)
            let want = try file.tensor(name)
            let got = m.network.logits(ids, m.params)
            XCTAssertEqual(got.shape, [8, 5, 27])
            let diff = got.maxAbsDifference(want)
            print("\(name): max |logits - PyTorch| = \(diff)")
            XCTAssertLessThan(diff, 1e-4, name)
        }
    }

    func testGraphsRoundTripThroughTheArchitectureFile() throws {
        for name in ["gpt2-tiny-seed0", "llama-tiny-base"] {
            let m = try model(name)
            let data = try JSONEncoder().encode(m.architecture.file)
            let back = try JSONDecoder().decode(ArchitectureFile.self, from: data).architecture()
            XCTAssertEqual(back, m.architecture, name)
        }
        // Tied: no lm_head.weight, the output layer reads the embedding; untied: its own matrix.
        XCTAssertEqual((try model("gpt2-tiny-seed0").architecture.nodes.last!.op as! LMHead).weight, "transformer.wte.weight")
        XCTAssertEqual((try model("llama-tiny-base").architecture.nodes.last!.op as! LMHead).weight, "lm_head.weight")
    }

    func testTokenIDsOutsideTheVocabularyAreADataMismatch() throws {
        let m = try model("gpt2-tiny-seed0")
        var ids = try data("modarith-test").slice(0..<4)
        var x = ids.x
        x[7] = 27
        ids = Dataset(x: x, labels: Array(ids.y), labelShape: ids.labelShape, name: "bad", isTokens: true)
        XCTAssertThrowsError(try m.evaluate(on: ids)) { error in
            guard let e = error as? NetworkError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.kind, .dataMismatch)
            XCTAssertEqual(e.tensor, "transformer.wte.weight")
            XCTAssertTrue(e.description.contains("token id 27.0 at row 1, position 2"), e.description)
        }
    }

    func testMetricsOfEveryModelOnTheFourTestSets() throws {
        let e = try expected()
        for name in Self.models {
            let family = name.hasPrefix("gpt2") ? "gpt2" : "llama"
            let want = ((e[family] as! [String: Any])["models"] as! [String: Any])[name] as! [String: [Double]]
            let m = try model(name)
            let train = ((e[family] as! [String: Any])["train_metrics"] as! [String: [Double]])[name]!
            let r = try m.evaluate(on: try data("modarith-train"))
            XCTAssertEqual(r.loss, train[0], accuracy: 1e-4, "\(name) on train")
            XCTAssertEqual(r.accuracy, train[1], accuracy: 1e-6, "\(name) on train")
            for (key, file) in Self.sets {
                let r = try m.evaluate(on: try data(file))
                XCTAssertEqual(r.loss, want[key]![0], accuracy: 1e-4, "\(name) on \(key)")
                XCTAssertEqual(r.accuracy, want[key]![1], accuracy: 1e-6, "\(name) on \(key)")
            }
        }
    }
}

/// Backward through whole GPT-2 and LLaMA graphs (tied embedding read twice, packed attention, GQA, RoPE,
/// SwiGLU) against central differences of the loss.
final class TransformerGradientTests: XCTestCase {
    func testWholeModelGradientsMatchFiniteDifferences() throws {
        let data = try Dataset(url: Fixtures.url("data/modarith-test.safetensors")).slice(0..<12)
        for name in ["gpt2-tiny-seed0", "llama-tiny-base"] {
            let m = try LoadedModel(path: Fixtures.url("transformers/\(name)").path)
            let labels = data.labels(0..<data.count)
            let step = m.network.step(m.params, x: data.x, y: labels, mode: .eval)
            func loss(_ p: ParameterSet) -> Double {
                let r = Network.crossEntropy(m.network.logits(data.x, p), labels: labels)
                return r.lossSum / Double(r.count)
            }
            var g = SeededGenerator(seed: 9)
            var worst = 0.0
            for pname in m.params.names {
                let grad = try XCTUnwrap(step.gradients[pname], "\(name): no gradient for \(pname)")
                let t = m.params[pname]!
                // The three entries of largest gradient and two random ones.
                let top = grad.storage.indices.sorted { abs(grad[$0]) > abs(grad[$1]) }.prefix(3)
                for i in Array(top) + [Int(g.next() % UInt64(t.count)), Int(g.next() % UInt64(t.count))] {
                    let h: Float = 3e-3
                    var plus = m.params, minus = m.params
                    plus[pname]![i] += h
                    minus[pname]![i] -= h
                    let numeric = (loss(plus) - loss(minus)) / Double(2 * h)
                    let err = abs(numeric - Double(grad[i])) / max(0.05, abs(numeric))
                    worst = max(worst, err)
                    XCTAssertLessThan(err, 0.02, "\(name) \(pname)[\(i)]: analytic \(grad[i]), numeric \(numeric)")
                }
            }
            print("\(name): worst relative gradient error \(worst)")
        }
    }
}
