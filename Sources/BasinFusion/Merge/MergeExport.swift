import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Writing in-memory merges (soups, Fisher, RegMean) with the same layout, metadata and guarantees as the
/// streaming export.
public enum MergeExport {
    /// Writes `params` in each tensor's `dtype(name)`, with `recipe` (YAML) and the inputs' SHA-256 in the metadata;
    /// `modelCard`: a folder output also gets the recipe's mergekit_config.yml and README.md (ModelCard).
    @discardableResult
    public static func write(_ params: ParameterSet, to out: URL, dtype: (String) -> DType, recipe: MergeRecipe?,
                             inputs: [(label: String, source: any TensorSource)], shardSize: Int = CheckpointWriter.defaultShardSize,
                             extraMetadata: [String: String] = [:], modelCard: Bool = false) throws -> [URL] {
        var meta: [String: String] = ["format": "pt"]
        if let recipe {
            meta["basin.recipe"] = recipe.yaml()
            meta["basin.merge_method"] = recipe.method.rawValue
        }
        var digests: [String: String] = [:]
        for (label, source) in inputs { digests[label] = try FileDigest.sha256(of: source) }
        let data = try JSONSerialization.data(withJSONObject: digests, options: [.sortedKeys, .withoutEscapingSlashes])
        meta["basin.inputs_sha256"] = String(decoding: data, as: UTF8.self)
        meta.merge(extraMetadata) { _, new in new }
        let plan = params.pairs.map { TensorPlan(name: $0.0, dtype: dtype($0.0), shape: $0.1.shape) }
        // A folder output of Hugging Face models is one too: the first model's config.json beside the weights.
        var extra: [(name: String, data: Data)] = []
        if CheckpointWriter.isFolder(out), let hf = inputs.lazy.compactMap({ $0.source as? HuggingFaceModel }).first {
            extra.append((HuggingFaceModel.configName, hf.configData))
        }
        if modelCard, CheckpointWriter.isFolder(out), let recipe { extra += ModelCard.files(recipe, out: out) }
        let writer = try CheckpointWriter(out: out, plan: plan, metadata: meta, shardSize: shardSize,
                                          protecting: inputs.flatMap { $0.source.files } + (recipe?.file.map { [URL(fileURLWithPath: $0)] } ?? []),
                                          extraFiles: extra)
        for (name, t) in params.pairs { try writer.write(name, t) }
        try writer.finish()
        return writer.outputFiles
    }

    /// Runs a data-aware recipe (fisher, regmean) in memory on loaded models.
    public static func dataAwareMerge(_ recipe: MergeRecipe, models: [LoadedModel], data: Dataset) throws -> ParameterSet {
        guard let network = models.first?.network else { throw MergeError("no models") }
        let params = models.map(\.params)
        func global(_ key: String) -> Double? { recipe.parameters[key]?.value(for: "") }
        switch recipe.method {
        case .fisher:
            let weights = recipe.tensorParameters(for: "").weights
            return try DataAwareMerge.fisherMerge(network: network, models: params, data: data, weights: weights,
                                                  samples: Int(global("fisher_samples") ?? 256))
        case .regmean:
            return try DataAwareMerge.regMean(network: network, models: params, data: data,
                                              samples: Int(global("regmean_samples") ?? 1024), alpha: global("alpha") ?? 0.9)
        default:
            return try ParameterMerge.merge(recipe, models: params)
        }
    }
}
