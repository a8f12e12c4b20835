/** Session ids the pinned dispatcher target creates and the load generator hits: `${PIN_PREFIX}${i}`. */
export const PIN_PREFIX = "bench-session-";
