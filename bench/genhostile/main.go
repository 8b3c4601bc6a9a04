// Command genhostile writes the hostile inputs of issue-style adversarial
// reviews into a directory, each between good records, so bench/hostile.sh
// can check that `vigil hunt` reads them in bounded memory, decodes every
// good record and quarantines the bad ones with their reasons:
//
//	bomb-zeros.csv.gz      gzip of zeros (takes the CSV framing path)
//	bomb-brackets.json.gz  gzip of '['
//	nesting.jsonl.gz       four million '[' as the first line, then good lines
//	deep.jsonl             a line nested four million levels (balanced) among good lines
//	huge-array.jsonl       a 30 MB line [{},{},…] among good lines
//	many-keys.jsonl        a record of 1.2 M distinct keys among good lines
//	long-line.jsonl        a 500 MB line among good lines
//	good.jsonl             good records only
//
// The bombs are concatenated gzip members of one compressed block, so
// writing them is fast; -bomb sets their decompressed size.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	dir := flag.String("dir", "bench/work/hostile", "output directory")
	bomb := flag.Int64("bomb", 10<<30, "decompressed bytes of each bomb")
	good := flag.Int("good", 1000, "good records before and after each hostile one")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	g := gen{dir: *dir, good: *good}
	g.bomb("bomb-zeros.csv.gz", 0, *bomb)
	g.bomb("bomb-brackets.json.gz", '[', *bomb)
	g.gz("nesting.jsonl.gz", func(w *bufio.Writer) {
		w.WriteString(strings.Repeat("[", 4<<20) + "\n")
		g.records(w, "nest-after")
	})
	g.file("deep.jsonl", func(w *bufio.Writer) {
		g.records(w, "deep-before")
		w.WriteString(strings.Repeat("[", 4<<20) + strings.Repeat("]", 4<<20) + "\n")
		g.records(w, "deep-after")
	})
	g.file("huge-array.jsonl", func(w *bufio.Writer) {
		g.records(w, "arr-before")
		w.WriteString("[" + strings.Repeat("{},", 10_000_000) + "{}]\n")
		g.records(w, "arr-after")
	})
	g.file("many-keys.jsonl", func(w *bufio.Writer) {
		g.records(w, "keys-before")
		w.WriteString(`{"CreationTime":"2024-01-01T00:00:00","Operation":"x","RecordType":1`)
		for i := range 1_200_000 {
			fmt.Fprintf(w, `,"k%d":%d`, i, i)
		}
		w.WriteString("}\n")
		g.records(w, "keys-after")
	})
	g.file("long-line.jsonl", func(w *bufio.Writer) {
		g.records(w, "long-before")
		w.WriteString(`{"CreationTime":"2024-01-01T00:00:00","Operation":"x","RecordType":1,"pad":"`)
		chunk := strings.Repeat("x", 1<<20)
		for range 500 {
			w.WriteString(chunk)
		}
		w.WriteString("\"}\n")
		g.records(w, "long-after")
	})
	g.file("good.jsonl", func(w *bufio.Writer) { g.records(w, "good") })
}

type gen struct {
	dir  string
	good int
}

// records writes g.good Management Activity API records with ids
// prefix-N.
func (g gen) records(w *bufio.Writer, prefix string) {
	for i := range g.good {
		fmt.Fprintf(w, `{"CreationTime":"2024-01-01T00:%02d:%02d","Id":"%s-%d","Operation":"MailItemsAccessed","RecordType":50,"Workload":"Exchange","UserId":"user%d@contoso.com","ClientIPAddress":"203.0.113.%d","MailboxOwnerUPN":"user%d@contoso.com"}`+"\n",
			i/60%60, i%60, prefix, i, i%50, i%250, i%50)
	}
}

func (g gen) file(name string, write func(*bufio.Writer)) {
	f, err := os.Create(filepath.Join(g.dir, name))
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	write(w)
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

func (g gen) gz(name string, write func(*bufio.Writer)) {
	g.file(name, func(w *bufio.Writer) {
		zw, _ := gzip.NewWriterLevel(w, gzip.BestCompression)
		bw := bufio.NewWriter(zw)
		write(bw)
		bw.Flush()
		zw.Close()
	})
}

// bomb writes n bytes of c as concatenated gzip members of 64 MiB each
// (gzip readers read concatenated members as one stream).
func (g gen) bomb(name string, c byte, n int64) {
	const member = 64 << 20
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	zw.Write(bytes.Repeat([]byte{c}, member))
	zw.Close()
	g.file(name, func(w *bufio.Writer) {
		for left := n; left > 0; left -= member {
			w.Write(z.Bytes())
		}
	})
}
