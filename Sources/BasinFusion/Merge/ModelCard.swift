import Foundation

/// What mergekit 0.1.5's `run_merge` writes beside the weights of a folder output when `write_model_card` is on (its
/// default; `--no-write-model-card` turns it off): `mergekit_config.yml`, the merge configuration, and `README.md`, the
/// model card of mergekit's card.py (`generate_card`): YAML front matter, the method with its paper link, the base
/// model, the other models and the configuration.
///
/// Differences, all because Basin reads local models only: mergekit copies the recipe file's text; Basin writes the
/// recipe as it read it (`MergeRecipe.yaml()`: the same meaning in mergekit's schema, comments dropped, a `--seed`
/// given on the command line recorded), so `basin merge OUT/mergekit_config.yml` rebuilds the same output. mergekit
/// lists Hugging Face Hub models in the front matter's `base_model` and links them; Basin's models are local paths,
/// which mergekit leaves out of that list too, so it is empty. mergekit lists the models in the order of a Python set
/// (arbitrary); Basin in the order the recipe names them.
public enum ModelCard {
    public static let configName = "mergekit_config.yml"
    public static let cardName = "README.md"

    /// The two files for a folder output `out` (named after its last path component, as mergekit names the card).
    public static func files(_ recipe: MergeRecipe, out: URL) -> [(name: String, data: Data)] {
        let config = recipe.yaml()
        return [(cardName, Data(card(recipe, configYAML: config, name: out.lastPathComponent).utf8)),
                (configName, Data(config.utf8))]
    }

    /// mergekit's CARD_TEMPLATE filled as `generate_card` fills it.
    public static func card(_ recipe: MergeRecipe, configYAML: String, name: String) -> String {
        // slerp's base_model is one end of the interpolation, not a base: mergekit lists it with the models.
        let base = recipe.method == .slerp ? nil : recipe.baseModel
        let bullets = recipe.mergekitReferencedModels.filter { $0 != base }.map { "* " + $0 }
        return """
        ---
        base_model: []
        library_name: transformers
        tags:
        - mergekit
        - merge

        ---
        # \(name.isEmpty ? "Untitled Model (1)" : name)

        This is a merge of pre-trained language models created using [mergekit](https://github.com/cg123/mergekit).

        ## Merge Details
        ### Merge Method

        This model was merged using the \(methodMarkdown(recipe.method)) merge method\(base.map { " using \($0) as a base" } ?? "").

        ### Models Merged

        The following models were included in the merge:
        \(bullets.joined(separator: "\n"))

        ### Configuration

        The following YAML configuration was used to produce this model:

        ```yaml
        \(configYAML)
        ```

        """
    }

    /// card.py's `method_md`: the registered method's pretty name linked to its reference, else its name (Basin's own
    /// methods are not registered in mergekit, so they show as their names).
    static func methodMarkdown(_ method: MergeMethod) -> String {
        let (pretty, url): (String?, String?) = switch method {
        case .linear: ("Linear", "https://arxiv.org/abs/2203.05482")
        case .taskArithmetic: ("Task Arithmetic", "https://arxiv.org/abs/2212.04089")
        case .ties: ("TIES", "https://arxiv.org/abs/2306.01708")
        case .dareTies: ("DARE TIES", "https://arxiv.org/abs/2311.03099")
        case .dareLinear: ("Linear DARE", "https://arxiv.org/abs/2311.03099")
        case .breadcrumbs: ("Model Breadcrumbs", "https://arxiv.org/abs/2312.06795")
        case .breadcrumbsTies: ("Model Breadcrumbs with TIES", "https://arxiv.org/abs/2312.06795")
        case .della: ("DELLA", "https://arxiv.org/abs/2406.11617")
        case .dellaLinear: ("Linear DELLA", "https://arxiv.org/abs/2406.11617")
        case .modelStock: ("Model Stock", "https://arxiv.org/abs/2403.19522")
        case .slerp: ("SLERP", "https://en.wikipedia.org/wiki/Slerp")
        case .nuslerp: ("NuSLERP", nil)
        case .multislerp: ("Multi-SLERP", "https://goddard.blog/posts/multislerp-wow-what-a-cool-idea")
        case .karcher: ("Karcher Mean", "https://en.wikipedia.org/wiki/Karcher_mean")
        case .sce: ("SCE", "https://arxiv.org/abs/2408.07990")
        case .nearswap: ("NearSwap", "https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001")
        case .arceeFusion: ("Arcee Fusion", "https://arcee.ai")
        case .ram: ("Reinforced Agent Merging", "https://arxiv.org/abs/2601.13572")
        case .ramplusTL: ("Reinforced Agent Merging Plus (Tensor-Local)", "https://arxiv.org/abs/2601.13572")
        case .passthrough: ("Passthrough", nil)
        case .fisher, .regmean, .basinPath: (nil, nil)
        }
        let shown = pretty ?? method.rawValue
        return url.map { "[\(shown)](\($0))" } ?? shown
    }
}

extension MergeRecipe {
    /// mergekit's `referenced_models()`: the base, the models and every slice's sources, each once (a slice's own
    /// base_model is not among them there either).
    var mergekitReferencedModels: [String] {
        var out: [String] = []
        for m in [baseModel].compactMap({ $0 }) + models.map(\.model) + slices.flatMap({ $0.sources.map(\.model) }) where !out.contains(m) {
            out.append(m)
        }
        return out
    }
}
