/// The characters widgets draw with: Unicode (box drawing, braille, blocks) or an ASCII fallback
/// for non-UTF-8 locales. The backend picks one at start and passes it to widgets in the `RenderContext`.
public struct Glyphs: Hashable, Sendable {
    public var unicode: Bool
    public var horizontal: String
    public var vertical: String
    public var topLeft: String
    public var topRight: String
    public var bottomLeft: String
    public var bottomRight: String
    public var teeDown: String   // ┬
    public var teeUp: String     // ┴
    public var teeRight: String  // ├
    public var teeLeft: String   // ┤
    public var progressFull: String
    public var progressEmpty: String
    public var sliderTrack: String
    public var sliderKnob: String
    public var marker: String
    public var selectionPointer: String
    public var ellipsis: String
    public var upperHalf: String
    public var legendLine: String
    public var scrollUp: String
    public var scrollDown: String

    public static let unicodeSet = Glyphs(
        unicode: true, horizontal: "─", vertical: "│", topLeft: "┌", topRight: "┐",
        bottomLeft: "└", bottomRight: "┘", teeDown: "┬", teeUp: "┴", teeRight: "├", teeLeft: "┤",
        progressFull: "█", progressEmpty: "░", sliderTrack: "─", sliderKnob: "●", marker: "◆",
        selectionPointer: "▶", ellipsis: "…", upperHalf: "▀", legendLine: "━", scrollUp: "▲", scrollDown: "▼")

    public static let asciiSet = Glyphs(
        unicode: false, horizontal: "-", vertical: "|", topLeft: "+", topRight: "+",
        bottomLeft: "+", bottomRight: "+", teeDown: "+", teeUp: "+", teeRight: "+", teeLeft: "+",
        progressFull: "#", progressEmpty: ".", sliderTrack: "-", sliderKnob: "O", marker: "X",
        selectionPointer: ">", ellipsis: "~", upperHalf: "#", legendLine: "-", scrollUp: "^", scrollDown: "v")

    public static func forUnicode(_ on: Bool) -> Glyphs { on ? unicodeSet : asciiSet }
}
