//go:build !unix

package exportdir

// oNoFollow is 0 where open has no O_NOFOLLOW: OpenNoFollow checks with Lstat after opening.
const oNoFollow = 0
