import BasinFusion
import BasinIO
import BasinTensor
import BasinTestSupport
import Foundation
import PropertyBased
import Testing

/// docs/reliability.md: a random recipe (any method, random models, parameters that are often out of range,
/// non-finite, of the wrong type or missing) either merges into a complete file or fails with a typed error
/// and leaves nothing behind — it never traps.
@Suite struct RecipeProperties {
    static let methods = MergeMethod.allCases.map(\.rawValue) + ["", "Linear", "model_soup"]
    static let keys = ["weight", "density", "t", "lambda", "normalize", "rescale", "gamma", "epsilon", "select_topk", "max_iter", "tol",
                       "filter_wise", "int8_mask", "nuslerp_row_wise", "alpha", "r", "eps", "unknown"]
    static let values = ["0", "1", "0.5", "-1", "2", "1e308", "-1e308", ".nan", ".inf", "-.inf", "true", "false", "null", "\"x\"", "[0, 1]",
                         "[{filter: w, value: 0.3}, {value: 0.7}]", "{a: 1}", "1e-9", "100000"]
    static let models = ["a.safetensors", "b.safetensors", "base.safetensors", "wide.safetensors", "missing.safetensors", "/dev/null"]

    static let good = ["0.5", "1", "0.3", "0.7", "true", "false"]

    /// A YAML recipe from random genes: mostly well-formed (the method's own parameters, valid values, existing
    /// models) so that many merge, with hostile choices mixed in at every step.
    static func recipe(_ genes: [Int]) -> String {
        var g = genes.makeIterator()
        func next(_ n: Int) -> Int { (g.next() ?? 0) % n }
        func hostile() -> Bool { next(14) == 0 }
        let method = hostile() ? methods[next(methods.count)]
            : ["linear", "task_arithmetic", "ties", "dare_linear", "slerp", "breadcrumbs", "della", "nuslerp", "karcher"][next(9)]
        let own = MergeMethod(rawValue: method)?.parameters ?? []
        func valid(_ p: MergeMethod.Parameter) -> String {
            p.kind == .boolean ? ["true", "false"][next(2)] : p.kind == .count ? "\(1 + next(5))" : good[next(4)]
        }
        func pair(perModel: Bool) -> String {
            let mine = own.filter { $0.perModel == perModel }
            if hostile() || mine.isEmpty { return "\(keys[next(keys.count)]): \(values[next(values.count)])" }
            let p = mine[next(mine.count)]
            return "\(p.name): \(hostile() ? values[next(values.count)] : valid(p))"
        }
        func parameters(perModel: Bool) -> String {
            let required = own.filter { $0.perModel == perModel && $0.required }.map { "\($0.name): \(valid($0))" }
            let extra = (0..<next(2)).map { _ in pair(perModel: perModel) }
            var seen = Set<String>()
            let all = (hostile() ? [] : required) + extra
            return all.filter { seen.insert(String($0.split(separator: ":")[0])).inserted }.joined(separator: ", ")
        }
        var unused = ["a.safetensors", "b.safetensors"]
        func model() -> String { hostile() || unused.isEmpty ? models[next(models.count)] : unused.removeFirst() }
        var lines = ["merge_method: \(method)"]
        if !hostile() || next(2) == 0 { lines.append("base_model: " + (hostile() ? models[next(models.count)] : "base.safetensors")) }
        if hostile() {
            lines.append(["models: a.safetensors", "models: []", "models: {model: a.safetensors}"][next(3)])
        } else {
            lines.append("models:")
            for _ in 0..<(hostile() ? next(4) : 2) {
                let p = parameters(perModel: true)
                lines.append("  - {model: \(model())" + (p.isEmpty ? "}" : ", parameters: {\(p)}}"))
            }
        }
        let global = parameters(perModel: false)
        if !global.isEmpty { lines.append("parameters: {\(global)}") }
        if next(4) == 0 { lines.append("dtype: " + (hostile() ? ["int8", "nonsense"][next(2)] : ["bfloat16", "float16", "float32"][next(3)])) }
        if hostile() { lines.append(["seed: -1", "seed: 7", "slices: []", "tokenizer_source: base", "junk_key: 1"][next(5)]) }
        return lines.joined(separator: "\n") + "\n"
    }

    @Test func randomRecipesMergeOrFailWithATypedError() async throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func write(_ name: String, rows: Int, fill: Float) throws {
            try SafeTensorsWriter.write([("w", Tensor(shape: [rows, 3], storage: (0..<(rows * 3)).map { Float($0) * 0.1 + fill })),
                                         ("b", Tensor(shape: [rows], repeating: fill))], to: dir.appendingPathComponent(name))
        }
        try write("a.safetensors", rows: 4, fill: 0.5)
        try write("b.safetensors", rows: 4, fill: -0.25)
        try write("base.safetensors", rows: 4, fill: 0)
        try write("wide.safetensors", rows: 5, fill: 1)
        let inputs = try ["a", "b", "base", "wide"].map { try FileDigest.sha256(dir.appendingPathComponent("\($0).safetensors")) }
        var merged = 0, refused = 0
        await propertyCheck(count: 400, input: Gen.int(in: 0...1_000_000).array(of: 40...80)) { genes in
            let text = Self.recipe(genes)
            let out = dir.appendingPathComponent("out.safetensors")
            defer { try? FileManager.default.removeItem(at: out) }
            do {
                let recipe = try MergeRecipe.parse(text, directory: dir, file: dir.appendingPathComponent("r.yaml").path)
                guard !recipe.method.needsData else { return }
                _ = try MergeExecutor.run(try MergePlan(recipe: recipe), out: out, hashInputs: false)
                let file = try SafeTensorsFile(url: out)
                #expect(!file.names.isEmpty, "\(text)")
                for n in file.names { _ = try file.tensor(n) }
                #expect(try NonFinite.scan(file).isEmpty, "a refused-by-default non-finite output was written:\n\(text)")
                merged += 1
            } catch is MergeError {
                refused += 1
            } catch is BasinIOError {
                refused += 1
            } catch {
                Issue.record("untyped error \(error) for:\n\(text)")
            }
            let left = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            #expect(left.filter { $0.hasSuffix(".tmp") }.isEmpty, "temporary files left for:\n\(text)")
        }
        #expect(merged > 0, "no random recipe merged: the generator is too hostile to test the happy path")
        #expect(refused > 0)
        #expect(try ["a", "b", "base", "wide"].map { try FileDigest.sha256(dir.appendingPathComponent("\($0).safetensors")) } == inputs)
    }
}
