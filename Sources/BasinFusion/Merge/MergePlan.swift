import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// A recipe resolved against its inputs: every output tensor with the model tensors it is made from and its
/// parameters resolved (filters, gradients, per-slice and per-model levels, defaults), all checked before anything
/// is written. Mirrors mergekit's `MergePlanner`: a `models:` recipe is one slice over every layer (the base model
/// added when it is not listed); a `slices:` recipe stacks layer ranges, taking embeddings from the first slice's
/// models and the final norm and head from the last slice's.
public struct MergePlan: Sendable {
    /// One input of an output tensor: a model (index into `sources`) and the tensor name in it.
    public struct Source: Sendable, Equatable {
        public var model: Int
        public var tensor: String
    }

    public struct Entry: Sendable {
        public var name: String
        public var shape: [Int]
        public var outputDType: DType
        /// Non-float tensors (integer buffers) are copied from the first input rather than merged.
        public var isFloatingPoint: Bool
        /// The inputs in the method's order (the base excluded when the method separates it).
        public var inputs: [Source]
        public var base: Source?
        public var parameters: TensorMergeParameters

        /// Every source read for this tensor (inputs, then the base).
        public var allSources: [Source] { inputs + (base.map { [$0] } ?? []) }
    }

    public let recipe: MergeRecipe
    /// The opened models, each once (by resolved path).
    public let sources: [any TensorSource]
    /// How the recipe names each source (for metadata and messages).
    public let labels: [String]
    public let entries: [Entry]
    /// The layer count of the output when slices change it (written to config.json).
    public let outputLayerCount: Int?
    /// Index of the model whose config.json and tokenizer the output takes (the base, else the first model).
    public let donor: Int?

    /// Every input's files and the recipe file (to protect them from being overwritten, e.g. a folder output's
    /// mergekit_config.yml that is the recipe being run).
    public var inputFiles: [URL] { sources.flatMap(\.files) + (recipe.file.map { [URL(fileURLWithPath: $0)] } ?? []) }
    public var outputBytes: Int { entries.reduce(0) { $0 + Tensor.elementCount($1.shape) * $1.outputDType.byteSize } }
    public var tensorPlans: [TensorPlan] { entries.map { TensorPlan(name: $0.name, dtype: $0.outputDType, shape: $0.shape) } }
    /// Bytes of input read for one entry.
    public func inputBytes(_ e: Entry) -> Int { e.allSources.reduce(0) { $0 + (sources[$1.model].info($1.tensor)?.byteCount ?? 0) } }

    /// Opens the recipe's inputs (Hugging Face folders, files, indexes) and plans the merge.
    public init(recipe: MergeRecipe) throws {
        var opened: [String: Int] = [:]
        var sources: [any TensorSource] = []
        var labels: [String] = []
        func open(_ path: String, key: String) throws -> Int {
            let url = try recipe.locate(path, key: key)
            let resolved = url.resolvingSymlinksInPath().path
            if let i = opened[resolved] { return i }
            let s: any TensorSource
            do { s = try ModelFile.open(url) } catch let e as BasinIOError {
                throw MergeError(.missingModel, file: recipe.file, key: key, "model '\(path)' cannot be opened: \(e)")
            }
            opened[resolved] = sources.count
            sources.append(s)
            labels.append(path)
            return sources.count - 1
        }
        var paths: [String: Int] = [:]
        if let b = recipe.baseModel { paths[b] = try open(b, key: "base_model") }
        for (i, m) in recipe.models.enumerated() { paths[m.model] = try open(m.model, key: "models[\(i)].model") }
        for (i, s) in recipe.slices.enumerated() {
            if let b = s.baseModel { paths[b] = try open(b, key: "slices[\(i)].base_model") }
            for (j, src) in s.sources.enumerated() { paths[src.model] = try open(src.model, key: "slices[\(i)].sources[\(j)].model") }
        }
        try self.init(recipe: recipe, sources: sources, labels: labels, modelIndex: paths)
    }

    /// Plans a `models:` recipe over already opened models (in the order of `recipe.inputModels`) and base.
    public init(recipe: MergeRecipe, models: [any TensorSource], base: (any TensorSource)?) throws {
        var sources: [any TensorSource] = []
        var labels: [String] = []
        var index: [String: Int] = [:]
        if let base, let b = recipe.baseModel {
            index[b] = 0
            sources.append(base)
            labels.append(b)
        }
        for (entry, m) in zip(recipe.inputModels, models) {
            index[entry.model] = sources.count
            sources.append(m)
            labels.append(entry.model)
        }
        try self.init(recipe: recipe, sources: sources, labels: labels, modelIndex: index)
    }

    private init(recipe: MergeRecipe, sources: [any TensorSource], labels: [String], modelIndex: [String: Int]) throws {
        self.recipe = recipe
        var sources = sources
        var labels = labels
        var planner = Planner(recipe: recipe, sources: sources, labels: labels, modelIndex: modelIndex)
        if recipe.method == .basinPath {
            try planner.addPathControlPoints(&sources, &labels)
        }
        planner.sources = sources
        planner.labels = labels
        let (entries, layers) = try recipe.slices.isEmpty ? (planner.planModels(), nil) : planner.planSlices()
        try planner.checkFiltersAndEffect(entries)
        self.sources = sources
        self.labels = labels
        self.entries = entries
        self.outputLayerCount = layers
        self.donor = recipe.donorModel.flatMap { modelIndex[$0] }
    }

    /// Metadata recorded in the output: `format: pt` (as Hugging Face writes), the recipe and the merge method.
    /// Input digests are added by the executor.
    public func metadata() -> [String: String] {
        ["format": "pt", "basin.merge_method": recipe.method.rawValue, "basin.recipe": recipe.yaml()]
    }
}

/// The planning work, kept apart so MergePlan stays a plain value.
private struct Planner {
    let recipe: MergeRecipe
    var sources: [any TensorSource]
    var labels: [String]
    let modelIndex: [String: Int]
    var method: MergeMethod { recipe.method }
    /// basin_path: the sources of the path's control points in order.
    var controlPoints: [Int] = []

    init(recipe: MergeRecipe, sources: [any TensorSource], labels: [String], modelIndex: [String: Int]) {
        self.recipe = recipe
        self.sources = sources
        self.labels = labels
        self.modelIndex = modelIndex
    }

    func fail(_ kind: MergeError.Kind, key: String? = nil, tensor: String? = nil, _ problem: String) -> MergeError {
        MergeError(kind, file: recipe.file, key: key, tensor: tensor, problem)
    }

    // MARK: basin_path

    mutating func addPathControlPoints(_ sources: inout [any TensorSource], _ labels: inout [String]) throws {
        guard let point = recipe.pathPoint else { throw fail(.missingValue, key: "basin_path", "missing") }
        let ends = recipe.models.map { modelIndex[$0.model]! }
        guard let bendsPath = point.bends else {
            controlPoints = ends
            return
        }
        guard ends.count == 2 else { throw fail(.methodFailed, key: "models", "a \(point.type.rawValue) path runs between exactly two models") }
        let url = try recipe.locate(bendsPath, key: "basin_path.bends")
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(url: url) } catch {
            throw fail(.missingModel, key: "basin_path.bends", "cannot be opened: \(error)")
        }
        guard let typeName = file.metadata[BendsFile.typeKey], typeName == point.type.rawValue,
              let count = file.metadata[BendsFile.countKey].flatMap(Int.init), count >= 1 else {
            throw fail(.invalidValue, key: "basin_path.bends", "\(bendsPath) is not a bends file of a \(point.type.rawValue) path (its metadata says \(file.metadata[BendsFile.typeKey] ?? "nothing"))")
        }
        var inner: [Int] = []
        for j in 1...count {
            inner.append(sources.count)
            sources.append(PrefixedTensorSource(file, prefix: "bend.\(j)."))
            labels.append("\(bendsPath)#bend.\(j)")
        }
        controlPoints = [ends[0]] + inner + [ends[1]]
    }

    // MARK: Parameters

    struct SourceRef {
        var model: Int
        var tensor: String
        var parameters: [String: ParameterValue]
        var key: String
    }

    /// Resolves the method's parameters for one output tensor, as mergekit's `ConfigReader.parameter`: the source's
    /// own parameters, then the slice's, then the recipe's, then the method default.
    func resolve(output: String, t: Double, inputs: [SourceRef], slice: [String: ParameterValue], sliceKey: String?) throws -> TensorMergeParameters {
        var weights = [Float](repeating: 1, count: inputs.count)
        var densities = [Float](repeating: 1, count: inputs.count)
        var gammas = [Float](repeating: 0.01, count: inputs.count)
        var epsilons = [Float](repeating: 0.15, count: inputs.count)
        var scales = [Float?](repeating: nil, count: inputs.count)
        var globals: [String: Double] = [:]
        for def in method.parameters {
            if def.perModel {
                for (i, src) in inputs.enumerated() {
                    let v = src.parameters[def.name]?.value(for: src.tensor, t: t)
                        ?? slice[def.name]?.value(for: src.tensor, t: t)
                        ?? recipe.parameters[def.name]?.value(for: src.tensor, t: t)
                        ?? def.defaultValue
                    guard let v else {
                        if def.required {
                            let why = method == .linear && recipe.baseModel == labels[src.model] && !recipe.models.contains { $0.model == labels[src.model] }
                                ? " (linear averages base_model too, as mergekit does: list it under models with a weight, or drop base_model)" : ""
                            throw fail(.missingValue, key: "\(src.key).parameters.\(def.name)", tensor: src.tensor,
                                       "\(method.rawValue) needs '\(def.name)' for model '\(labels[src.model])'\(why)")
                        }
                        continue
                    }
                    switch def.name {
                    case "weight": weights[i] = Float(v)
                    case "density": densities[i] = Float(v)
                    case "gamma": gammas[i] = Float(v)
                    case "epsilon": epsilons[i] = Float(v)
                    case "scale": scales[i] = Float(v)
                    default: break
                    }
                }
            } else {
                let v = slice[def.name]?.value(for: output, t: t) ?? recipe.parameters[def.name]?.value(for: output, t: t) ?? def.defaultValue
                guard let v else {
                    if def.required { throw fail(.missingValue, key: "\(sliceKey.map { $0 + "." } ?? "")parameters.\(def.name)", tensor: output, "\(method.rawValue) needs '\(def.name)'") }
                    continue
                }
                globals[def.name] = v
            }
        }
        var p = TensorMergeParameters(weights: weights, densities: densities, normalize: (globals["normalize"] ?? 0) != 0,
                                      t: Float(globals["t"] ?? 0.5), lambda: Float(globals["lambda"] ?? 1),
                                      rescale: (globals["rescale"] ?? 0) != 0, seed: recipe.seed, gammas: gammas, epsilons: epsilons,
                                      scales: scales, options: globals)
        if method == .basinPath {
            let c = ModelPath.weights(type: recipe.pathPoint!.type, count: inputs.count, at: Double(p.t))
            p.weights = c.map { Float($0) }
            p.normalize = false
        }
        try check(p, output: output, inputs: inputs)
        return p
    }

    /// Checks that need resolved values.
    func check(_ p: TensorMergeParameters, output: String, inputs: [SourceRef]) throws {
        if method == .linear && p.normalize {
            var total: Float = 0
            for w in p.weights { total += w }
            if total == 0 { throw fail(.invalidValue, tensor: output, "the weights sum to zero and normalize is on: the merge would divide by zero") }
        }
        if method.sparsification == .dellaMagprune {
            for (i, d) in p.densities.enumerated() where d > 0 && d < 1 {
                let e = p.epsilons[i]
                if !(d - e > 0 && d + e < 1) {
                    throw fail(.invalidValue, key: "\(inputs[i].key).parameters.epsilon", tensor: output,
                               "DELLA needs density - epsilon > 0 and density + epsilon < 1 (density \(d), epsilon \(e))")
                }
            }
        }
    }

    // MARK: models:

    /// mergekit's `models:` form: every tensor of the donor, from every model (the base added when unlisted).
    func planModels() throws -> [MergePlan.Entry] {
        var refs: [(index: Int, params: [String: ParameterValue], key: String)] = []
        for (i, m) in recipe.models.enumerated() { refs.append((modelIndex[m.model]!, m.parameters, "models[\(i)]")) }
        var baseIndex: Int?
        if let b = recipe.baseModel {
            baseIndex = modelIndex[b]!
            if !recipe.models.contains(where: { $0.model == b }) { refs.append((baseIndex!, [:], "base_model")) }
        }
        if method == .basinPath {
            refs = controlPoints.map { ($0, [:], "models") }
        }
        let reference = baseIndex ?? refs[0].index
        let layout = ModelLayout(sources[reference])
        let referenceSource = sources[reference]
        // Every model must hold exactly the reference's tensors.
        for r in refs where r.index != reference {
            let names = Set(sources[r.index].names)
            if let missing = referenceSource.names.first(where: { !names.contains($0) }) {
                throw fail(.incompatibleModels, key: r.key, tensor: missing, "model '\(labels[r.index])' has no such tensor, which '\(labels[reference])' has")
            }
            let referenceNames = Set(referenceSource.names)
            if let extra = sources[r.index].names.first(where: { !referenceNames.contains($0) }) {
                throw fail(.incompatibleModels, key: r.key, tensor: extra, "model '\(labels[r.index])' has this tensor, which '\(labels[reference])' lacks")
            }
        }
        var entries: [MergePlan.Entry] = []
        entries.reserveCapacity(referenceSource.names.count)
        for name in referenceSource.names {
            let all = refs.map { SourceRef(model: $0.index, tensor: name, parameters: $0.params, key: $0.key) }
            entries.append(try entry(output: name, t: layout.depth(name), sources: all, baseModel: baseIndex, slice: [:], sliceKey: nil))
        }
        return entries
    }

    /// One output tensor from its sources: shapes and kinds checked, the base separated, parameters resolved.
    func entry(output: String, t: Double, sources all: [SourceRef], baseModel: Int?, slice: [String: ParameterValue], sliceKey: String?) throws -> MergePlan.Entry {
        guard let first = all.first, let info = sources[first.model].info(first.tensor) else {
            throw fail(.incompatibleModels, tensor: output, "no input holds it")
        }
        for s in all.dropFirst() {
            guard let o = sources[s.model].info(s.tensor) else {
                throw fail(.incompatibleModels, key: s.key, tensor: s.tensor, "model '\(labels[s.model])' has no such tensor")
            }
            guard o.shape == info.shape else {
                throw fail(.incompatibleModels, key: s.key, tensor: s.tensor,
                           "has shape \(o.shape) in '\(labels[s.model])' but \(info.shape) in '\(labels[first.model])'")
            }
            guard o.dtype.isFloatingPoint == info.dtype.isFloatingPoint else {
                throw fail(.incompatibleModels, key: s.key, tensor: s.tensor,
                           "is \(o.dtype.rawValue) in '\(labels[s.model])' but \(info.dtype.rawValue) in '\(labels[first.model])'")
            }
        }
        let separate = method.separatesBase ? baseModel : nil
        let base = separate.flatMap { b in all.first { $0.model == b } }
        let inputs = all.filter { $0.model != separate }
        let float = info.dtype.isFloatingPoint
        let dtypeSource = base.map { sources[$0.model].info($0.tensor)!.dtype } ?? info.dtype
        let parameters = float ? try resolve(output: output, t: t, inputs: inputs, slice: slice, sliceKey: sliceKey)
            : TensorMergeParameters(weights: inputs.map { _ in 1 })
        return MergePlan.Entry(name: output, shape: info.shape, outputDType: float ? (recipe.outputDType ?? dtypeSource) : info.dtype,
                               isFloatingPoint: float, inputs: inputs.map { .init(model: $0.model, tensor: $0.tensor) },
                               base: base.map { .init(model: $0.model, tensor: $0.tensor) }, parameters: parameters)
    }

    // MARK: slices:

    /// mergekit's `slices:` form: loose "pre" tensors (embeddings) from the first slice's models, each slice's layers
    /// renumbered consecutively, loose "post" tensors (final norm, head) from the last slice's models.
    func planSlices() throws -> ([MergePlan.Entry], Int) {
        let slices = recipe.slices
        func refs(_ s: Int) -> [(index: Int, source: MergeRecipe.SliceSource, key: String)] {
            slices[s].sources.enumerated().map { (modelIndex[$1.model]!, $1, "slices[\(s)].sources[\($0)]") }
        }
        func base(_ s: Int) -> Int? {
            guard method.separatesBase, let b = slices[s].baseModel ?? recipe.baseModel else { return nil }
            return modelIndex[b]
        }
        // One stack of layers per model.
        var prefix: String?
        for s in slices.indices {
            for r in refs(s) {
                let layout = ModelLayout(sources[r.index])
                guard layout.layerCounts.count == 1, let (p, n) = layout.layerCounts.first else {
                    throw fail(.unsupported, key: "\(r.key).model", "slices need a model with one stack of numbered layers; '\(labels[r.index])' has \(layout.layerCounts.count) (\(layout.layerCounts.keys.sorted().joined(separator: ", ")))")
                }
                if let prefix, prefix != p {
                    throw fail(.incompatibleModels, key: "\(r.key).model", "'\(labels[r.index])' numbers its layers under '\(p)', other models under '\(prefix)'")
                }
                prefix = p
                guard r.source.layerRange.upperBound <= n else {
                    throw fail(.invalidValue, key: "\(r.key).layer_range", "[\(r.source.layerRange.lowerBound), \(r.source.layerRange.upperBound)] runs past the \(n) layers of '\(labels[r.index])'")
                }
            }
        }
        var entries: [MergePlan.Entry] = []
        func loose(_ s: Int, pre: Bool) throws {
            let rs = refs(s)
            for name in sources[rs[0].index].names where LayerPosition(name) == nil && LayerPosition.isPreLayer(name) == pre {
                let all = rs.map { SourceRef(model: $0.index, tensor: name, parameters: $0.source.parameters, key: $0.key) }
                entries.append(try entry(output: name, t: 0, sources: all, baseModel: base(s), slice: slices[s].parameters, sliceKey: "slices[\(s)]"))
            }
        }
        try loose(0, pre: true)
        var outLayer = 0
        for s in slices.indices {
            let rs = refs(s)
            let length = rs[0].source.layerRange.count
            for offset in 0..<length {
                let t = length > 1 ? Double(offset) / Double(length - 1) : 1
                let first = rs[0]
                let layer = first.source.layerRange.lowerBound + offset
                let templates = sources[first.index].names.compactMap { LayerPosition($0) }.filter { $0.index == layer }
                guard !templates.isEmpty else {
                    throw fail(.incompatibleModels, key: "\(first.key).layer_range", "'\(labels[first.index])' has no tensors for layer \(layer)")
                }
                for tpl in templates {
                    let all = rs.map { r in
                        SourceRef(model: r.index, tensor: tpl.name(atLayer: r.source.layerRange.lowerBound + offset), parameters: r.source.parameters, key: r.key)
                    }
                    entries.append(try entry(output: tpl.name(atLayer: outLayer), t: t, sources: all, baseModel: base(s),
                                             slice: slices[s].parameters, sliceKey: "slices[\(s)]"))
                }
                outLayer += 1
            }
        }
        try loose(slices.count - 1, pre: false)
        return (entries, outLayer)
    }

    // MARK: Whole-recipe checks

    /// Every filter must match some tensor, and a merge where every model has weight zero is refused.
    func checkFiltersAndEffect(_ entries: [MergePlan.Entry]) throws {
        var names = Set<String>()
        for e in entries {
            names.insert(e.name)
            for s in e.allSources { names.insert(s.tensor) }
        }
        func checkFilters(_ params: [String: ParameterValue], key: String) throws {
            for (name, v) in params.sorted(by: { $0.key < $1.key }) {
                for f in v.filters where !names.contains(where: { $0.contains(f) }) {
                    throw fail(.noEffect, key: "\(key).\(name)", "filter '\(f)' matches no tensor of the models, so it would do nothing")
                }
            }
        }
        try checkFilters(recipe.parameters, key: "parameters")
        for (i, m) in recipe.models.enumerated() { try checkFilters(m.parameters, key: "models[\(i)].parameters") }
        for (i, s) in recipe.slices.enumerated() {
            try checkFilters(s.parameters, key: "slices[\(i)].parameters")
            for (j, src) in s.sources.enumerated() { try checkFilters(src.parameters, key: "slices[\(i)].sources[\(j)].parameters") }
        }
        if method.parameter("weight") != nil && method != .basinPath {
            let floats = entries.filter(\.isFloatingPoint)
            if !floats.isEmpty && floats.allSatisfy({ $0.parameters.weights.allSatisfy { $0 == 0 } }) {
                throw fail(.noEffect, key: "models", "every model has weight 0 for every tensor: the merge would do nothing")
            }
        }
    }
}

/// A view of the tensors of a file whose names start with a prefix, with the prefix removed (a bends file's
/// `bend.1.` control point as a model).
public final class PrefixedTensorSource: TensorSource {
    public let inner: any TensorSource
    public let prefix: String
    public let names: [String]

    public init(_ inner: any TensorSource, prefix: String) {
        self.inner = inner
        self.prefix = prefix
        names = inner.names.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    public var displayPath: String { inner.displayPath + "#" + prefix }
    public var metadata: [String: String] { inner.metadata }
    public var files: [URL] { inner.files }
    public func info(_ name: String) -> TensorInfo? { inner.info(prefix + name) }
    public func tensor(_ name: String) throws -> Tensor { try inner.tensor(prefix + name) }
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try inner.withRawBytes(prefix + name, body)
    }
    public func release(_ name: String) { inner.release(prefix + name) }
    public func release(_ name: String, bytes: Range<Int>) { inner.release(prefix + name, bytes: bytes) }
}
