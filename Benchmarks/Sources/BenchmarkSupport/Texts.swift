/// Benchmark inputs, written for this project: about 25, 150 and 1,000 words of journal-style text
/// that exercises every module (emotion words, negation, contrast, markers, mental states, events).
public enum Texts {
    public static let sentences = [
        "I was furious because they lied to me, but I know she meant well and I still trust her.",
        "Yesterday my sister called and said she had already booked the tickets, so we will fly to Lisbon on Friday.",
        "I think my manager believes I want the promotion, although honestly I just want more freedom to choose my own projects.",
        "The lights were off when we arrived; they must have gone to bed early.",
        "According to the doctor, the results look good, which means I can finally stop worrying.",
        "If the weather holds tomorrow, we are going to hike up to the lake and camp by the water.",
        "Before that, we had spent weeks arguing about money, and I felt lonely and tired every single night.",
        "My father never admitted that he was afraid, yet I could see it in his eyes when the phone rang.",
        "Helping my neighbours after the flood mattered more to me than any award I have ever won.",
        "She noticed that I was nervous, smiled, and told me that everyone makes mistakes at the beginning.",
        "We didn't expect the surprise party, and Tom laughed so hard that he nearly dropped the cake!",
        "Later that evening I realised how grateful I am for friends who show up when things fall apart.",
    ]

    /// About 25 words.
    public static let short = sentences[0] + " They must have been scared."
    /// About 150 words.
    public static let medium = sentences.prefix(8).joined(separator: " ")
    /// About 1,000 words.
    public static let long = (0..<5).map { _ in sentences.joined(separator: " ") }.joined(separator: "\n\n")
}
